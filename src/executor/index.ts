// The executor's public surface: run one process of a RUN step in a container.
//
// Contract for callers (the solver):
// - detectRuntime() once per build; cleanupStale(stateDir) once at start-up, before the first
//   run, to remove containers and bundles of strata processes that died (kill -9).
// - runContainer(spec, { runtime, stateDir }) resolves with { exitCode, durationMs } for every
//   process that ran or that the runtime failed to start (exit code 1 and the runtime's own
//   message on stderr, e.g. a missing executable); a non-zero exitCode is the caller's to turn
//   into a build error. It rejects with StrataError: ABORTED (spec.signal fired; the container
//   was SIGKILLed and removed), BAD_ROOTFS, MOUNT_SOURCE_MISSING, BAD_PATH, BAD_RUN, NO_RUNTIME;
//   or with the error an output callback threw.
// - The rootfs is left as the step wrote it, minus the empty mount points the runtime had to
//   create for /etc/hosts, /etc/resolv.conf and spec.mounts (as BuildKit removes them). A
//   missing cwd is created, owned by the step's user. /proc, /dev and /sys mount points that
//   the rootfs lacked are kept, as with BuildKit.
// - resolveUser(rootfs, USER) gives the ids for spec.user from the rootfs's own files.
// - stateDir layout: bundles/<id>/ (config.json, hosts, resolv.conf) and runtime/<name>/ (the
//   runtime's --root). Container ids are strata-<pid>-<pid start time>-<random>.
export { detectRuntime } from './runtime.js';
export { runContainer } from './run.js';
export type { RunOptions } from './run.js';
export { resolveUser } from './user.js';
export { cleanupStale } from './cleanup.js';
export type { CleanupReport } from './cleanup.js';
export { buildOciConfig } from './spec.js';
export type { OciConfig } from './spec.js';
export type { ExecMount, RunResult, RunSpec, Runtime, RuntimeName, UserIds } from './types.js';
