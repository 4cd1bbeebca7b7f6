// One process of a RUN step in a fresh container: write the bundle, run the runtime in the
// foreground with our pipes as the container's stdout/stderr, then always remove the
// container, the mount stubs it left in the rootfs and the bundle.
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { chmod, chown, lstat, mkdir, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { StrataError } from '../errors.js';
import { newContainerId } from './container-id.js';
import { runtimeTool } from './invoke.js';
import { bundlesDir, runtimeRoot } from './layout.js';
import { hostResolvConf, hostsFile, resolvConfFor } from './netfiles.js';
import { resolveInRoot } from './rootpath.js';
import { hostCgroupLayout, runtimeInvocation } from './runtime.js';
import { buildOciConfig, containerPath, DEFAULT_HOSTNAME } from './spec.js';
import { findMountStubs, removeMountStubs, type MountStubs } from './stubs.js';
import type { RunResult, RunSpec, Runtime } from './types.js';

export { resolveUser } from './user.js';
export type { ExecMount, RunResult, RunSpec, Runtime, UserIds } from './types.js';

export interface RunOptions {
  runtime: Runtime;
  /** Bundles and the runtime's --root live below it; share it between runs of one store. */
  stateDir: string;
}

const KILL_RETRY_MS = 100;
// If `kill` cannot reach the container (e.g. still being created) for this long, the runtime
// process itself is killed and `delete -f` finishes the job.
const KILL_GIVE_UP_MS = 5_000;

function abortError(id: string, reason: unknown): StrataError {
  return new StrataError('ABORTED', `RUN step aborted: container ${id} was killed`, { cause: reason });
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

async function checkRootfs(rootfs: string): Promise<void> {
  let real: string;
  try {
    real = await realpath(rootfs);
  } catch (e) {
    throw new StrataError('BAD_ROOTFS', `rootfs ${rootfs} does not exist: ${(e as Error).message}`);
  }
  // runc refuses a symlinked root.path ("not an absolute path, or a symlink").
  if (real !== rootfs) {
    throw new StrataError('BAD_ROOTFS', `rootfs must be an absolute real path; ${rootfs} resolves to ${real}`, {
      hint: 'pass the realpath of the mounted rootfs',
    });
  }
  if (!(await stat(rootfs)).isDirectory()) throw new StrataError('BAD_ROOTFS', `rootfs ${rootfs} is not a directory`);
}

async function checkMountSources(spec: RunSpec): Promise<void> {
  for (const m of spec.mounts) {
    if (m.type !== 'bind') continue;
    if (!(await exists(m.source))) {
      throw new StrataError('MOUNT_SOURCE_MISSING', `bind mount source ${m.source} (for ${m.target}) does not exist`);
    }
  }
}

/** mkdir -p inside the rootfs; components it creates get mode 0755 and the step's owner. */
async function ensureCwd(spec: RunSpec): Promise<void> {
  const host = await resolveInRoot(spec.rootfs, spec.cwd);
  if (await exists(host)) return;
  const created: string[] = [];
  for (let p = host; p !== spec.rootfs && !(await exists(p)); p = dirname(p)) created.push(p);
  await mkdir(host, { recursive: true, mode: 0o755 });
  for (const p of created) {
    await chown(p, spec.user.uid, spec.user.gid);
    await chmod(p, 0o755);
  }
}

function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const n = signal ? osConstants.signals[signal] : undefined;
  return 128 + (n ?? 0);
}

/**
 * Run `spec` to completion. Resolves with the exit code whatever it is (non-zero included, and
 * also when the runtime itself failed to start the process: then its message went to stderr);
 * rejects on an abort (StrataError 'ABORTED') or when strata could not set the run up.
 */
export async function runContainer(spec: RunSpec, opts: RunOptions): Promise<RunResult> {
  const { runtime, stateDir } = opts;
  const id = newContainerId();
  if (spec.signal?.aborted) throw abortError(id, spec.signal.reason);
  await checkRootfs(spec.rootfs);
  await checkMountSources(spec);

  const bundle = join(bundlesDir(stateDir), id);
  const root = runtimeRoot(stateDir, runtime.name);
  await mkdir(root, { recursive: true, mode: 0o700 });
  await mkdir(bundle, { recursive: true, mode: 0o711 });
  let stubs: MountStubs = { paths: [], parents: new Map() };
  try {
    const files = { hostsPath: join(bundle, 'hosts'), resolvConfPath: join(bundle, 'resolv.conf') };
    const config = buildOciConfig(spec, files);
    await writeFile(files.hostsPath, hostsFile(spec.hostname ?? DEFAULT_HOSTNAME), { mode: 0o644 });
    await writeFile(files.resolvConfPath, resolvConfFor(await hostResolvConf(), spec.network), { mode: 0o644 });
    await writeFile(join(bundle, 'config.json'), JSON.stringify(config));
    const targets = spec.mounts.map((m) => containerPath(m.target, 'mount target'));
    stubs = await findMountStubs(spec.rootfs, ['/etc/resolv.conf', '/etc/hosts', ...targets]);
    await ensureCwd(spec);
    return await runForeground(spec, runtime, root, bundle, id);
  } finally {
    try {
      if (await exists(join(root, id))) await runtimeTool(runtime, root, ['delete', '-f', id]);
    } finally {
      await removeMountStubs(spec.rootfs, stubs);
      await rm(bundle, { recursive: true, force: true });
    }
  }
}

async function runForeground(spec: RunSpec, rt: Runtime, root: string, bundle: string, id: string): Promise<RunResult> {
  const inv = runtimeInvocation(rt, root, ['run', '--bundle', bundle, id], await hostCgroupLayout());
  const started = performance.now();
  const child = spawn(inv.file, inv.args, { cwd: bundle, stdio: ['ignore', 'pipe', 'pipe'] });

  let closed = false;
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', (e) => {
      closed = true;
      reject(
        new StrataError('NO_RUNTIME', `cannot start the OCI runtime ${inv.file}: ${e.message}`, {
          hint: inv.file === 'unshare' ? 'apt-get install util-linux (crun needs unshare here)' : `apt-get install ${rt.name}`,
          cause: e,
        }),
      );
    });
    child.on('close', (code, signal) => {
      closed = true;
      resolve({ exitCode: exitCodeOf(code, signal), durationMs: performance.now() - started });
    });
  });
  // A throwing output callback must not crash the process nor leave the container running:
  // the step runs on and the first such error is what runContainer rejects with.
  let callbackError: unknown;
  const deliver = (cb: ((b: Buffer) => void) | undefined) => (b: Buffer) => {
    if (!cb || callbackError !== undefined) return;
    try {
      cb(b);
    } catch (e) {
      callbackError = e;
    }
  };
  child.stdout.on('data', deliver(spec.stdout));
  child.stderr.on('data', deliver(spec.stderr));

  let aborted = false;
  const onAbort = (): void => {
    aborted = true;
    void (async () => {
      const giveUp = performance.now() + KILL_GIVE_UP_MS;
      while (!closed) {
        await runtimeTool(rt, root, ['kill', id, 'KILL'], KILL_GIVE_UP_MS).catch(() => undefined);
        if (closed) return;
        if (performance.now() > giveUp) {
          child.kill('SIGKILL');
          return;
        }
        await Promise.race([done.catch(() => undefined), new Promise((r) => setTimeout(r, KILL_RETRY_MS))]);
      }
    })();
  };
  spec.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (spec.signal?.aborted) onAbort();
    const result = await done;
    if (aborted) throw abortError(id, spec.signal?.reason);
    if (callbackError !== undefined) throw callbackError;
    return result;
  } finally {
    spec.signal?.removeEventListener('abort', onAbort);
  }
}
