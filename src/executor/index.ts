// The executor's public surface: run one process of a RUN step in a container.
export { detectRuntime } from './runtime.js';
export { runContainer } from './run.js';
export type { RunOptions } from './run.js';
export { resolveUser } from './user.js';
export { cleanupStale } from './cleanup.js';
export type { CleanupReport } from './cleanup.js';
export { buildOciConfig } from './spec.js';
export type { ExecMount, RunResult, RunSpec, Runtime, RuntimeName, UserIds } from './types.js';
