// Leftovers of builds that died without cleaning up (kill -9, power loss): their containers
// may still run and hold the rootfs busy, their bundles fill the state dir. Only what belongs
// to a dead strata process is touched, so concurrent builds sharing stateDir are safe.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isStrataId, ownerIsDead } from './container-id.js';
import { runtimeTool } from './invoke.js';
import { bundlesDir, runtimeRoot } from './layout.js';
import { detectRuntime } from './runtime.js';
import type { RuntimeName } from './types.js';

export interface CleanupReport {
  /** Containers removed with `delete -f`, as `runtime:id`. */
  containers: string[];
  /** Bundle directories removed. */
  bundles: string[];
  /** What could not be removed, with the reason. */
  failures: string[];
}

async function entries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

export async function cleanupStale(stateDir: string): Promise<CleanupReport> {
  const report: CleanupReport = { containers: [], bundles: [], failures: [] };
  for (const name of ['crun', 'runc'] as RuntimeName[]) {
    const root = runtimeRoot(stateDir, name);
    const stale = (await entries(root)).filter((id) => isStrataId(id) && ownerIsDead(id));
    if (stale.length === 0) continue;
    let rt;
    try {
      rt = await detectRuntime(name);
    } catch (e) {
      report.failures.push(...stale.map((id) => `${name}:${id}: ${(e as Error).message}`));
      continue;
    }
    for (const id of stale) {
      const r = await runtimeTool(rt, root, ['delete', '-f', id]);
      if (r.code === 0) {
        report.containers.push(`${name}:${id}`);
      } else if (/does not exist|not found|no such/i.test(r.stderr)) {
        // The container is gone and only its state folder is left.
        await rm(join(root, id), { recursive: true, force: true });
        report.containers.push(`${name}:${id}`);
      } else {
        report.failures.push(`${name}:${id}: ${r.stderr.trim()}`);
      }
    }
  }
  const bundles = bundlesDir(stateDir);
  for (const id of await entries(bundles)) {
    if (!isStrataId(id) || !ownerIsDead(id)) continue;
    await rm(join(bundles, id), { recursive: true, force: true });
    report.bundles.push(id);
  }
  return report;
}
