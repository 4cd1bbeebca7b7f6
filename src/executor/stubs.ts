// Runtimes create missing mount points (empty files and dirs) in the rootfs; left there they
// would leak into the step's layer. Like BuildKit (recursive stub removal, LLB's default), note
// which targets and parents were missing before the run and remove them after if still empty.
// Beyond BuildKit, the existing directory that received a stub gets its pre-run times back when
// the step did not add or remove anything else in it, so a differ sees it unchanged.
import { execFile } from 'node:child_process';
import { lstat, readdir, rmdir, stat, unlink, utimes } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { resolveInRoot } from './rootpath.js';

interface DirState {
  atimeNs: bigint;
  mtimeNs: bigint;
  names: string[];
}

export interface MountStubs {
  /** Host paths that did not exist before the run. */
  paths: string[];
  /** Existing directories that will receive a stub, as they were before the run. */
  parents: Map<string, DirState>;
}

async function missing(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR';
  }
}

async function dirState(p: string): Promise<DirState | undefined> {
  try {
    const st = await stat(p, { bigint: true });
    if (!st.isDirectory()) return undefined;
    return { atimeNs: st.atimeNs, mtimeNs: st.mtimeNs, names: (await readdir(p)).sort() };
  } catch {
    return undefined;
  }
}

function nsToSeconds(ns: bigint): number {
  return Number(ns / 1000n) / 1e6;
}

function touchTime(ns: bigint): string {
  return `@${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}

/** Node's utimes rounds to microseconds; GNU touch sets nanoseconds, so the dir compares equal. */
async function restoreTimesExactly(dir: string, st: DirState): Promise<void> {
  const run = promisify(execFile);
  await run('touch', ['-c', '-a', '-d', touchTime(st.atimeNs), dir]);
  await run('touch', ['-c', '-m', '-d', touchTime(st.mtimeNs), dir]);
}

export async function findMountStubs(rootfs: string, targets: string[]): Promise<MountStubs> {
  const stubs: MountStubs = { paths: [], parents: new Map() };
  for (const t of targets) {
    let p = await resolveInRoot(rootfs, t);
    if (p === rootfs || !p.startsWith(`${rootfs}/`) || !(await missing(p))) continue;
    while (p !== rootfs && (await missing(dirname(p)))) {
      if (!stubs.paths.includes(p)) stubs.paths.push(p);
      p = dirname(p);
    }
    if (!stubs.paths.includes(p)) stubs.paths.push(p);
    const parent = dirname(p);
    if (!stubs.parents.has(parent)) {
      const st = await dirState(parent);
      if (st) stubs.parents.set(parent, st);
    }
  }
  return stubs;
}

/** Still resolves to itself: the step did not swap a component for a symlink. */
async function unmoved(rootfs: string, p: string): Promise<boolean> {
  return (await resolveInRoot(rootfs, p.slice(rootfs.length))) === p;
}

export async function removeMountStubs(rootfs: string, stubs: MountStubs): Promise<void> {
  // Deepest first: /etc/hosts and /etc/resolv.conf must go before /etc can.
  const ordered = [...stubs.paths].sort((a, b) => b.split('/').length - a.split('/').length);
  for (const p of ordered) {
    const parent = dirname(p);
    try {
      if (!(await unmoved(rootfs, p)) || !(await unmoved(rootfs, parent))) continue;
      const st = await lstat(p);
      if (st.isDirectory()) {
        if ((await readdir(p)).length !== 0) continue;
      } else if (!st.isFile() || st.size !== 0) continue;
      const pst = await stat(parent, { bigint: true });
      if (st.isDirectory()) await rmdir(p);
      else await unlink(p);
      await utimes(parent, nsToSeconds(pst.atimeNs), nsToSeconds(pst.mtimeNs));
    } catch {
      // A stub that cannot be removed (already gone, busy) is not worth failing the step for.
    }
  }
  for (const [dir, before] of stubs.parents) {
    try {
      if (!(await unmoved(rootfs, dir))) continue;
      const now = await dirState(dir);
      if (!now || now.names.join('\0') !== before.names.join('\0')) continue;
      await restoreTimesExactly(dir, before);
    } catch {
      // as above
    }
  }
}
