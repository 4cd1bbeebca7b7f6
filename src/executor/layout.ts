// Where the executor keeps its state below the caller's stateDir: one bundle per container and
// one runtime --root per runtime (state after a crash is ours to find and remove).
import { join } from 'node:path';
import type { RuntimeName } from './types.js';

export function bundlesDir(stateDir: string): string {
  return join(stateDir, 'bundles');
}

export function runtimeRoot(stateDir: string, name: RuntimeName): string {
  return join(stateDir, 'runtime', name);
}
