// Runtimes create missing mount points (empty files and dirs) in the rootfs; left there they
// would leak into the step's layer. Like BuildKit (recursive stub removal, LLB's default), note
// which targets and parents were missing before the run and remove them after if still empty,
// restoring the parent's times so the layer stays reproducible.
import { lstat, readdir, rmdir, stat, unlink, utimes } from 'node:fs/promises';
import { dirname } from 'node:path';
import { resolveInRoot } from './rootpath.js';

async function missing(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR';
  }
}

/** Host paths (deepest first per target) that do not exist yet. */
export async function findMountStubs(rootfs: string, targets: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const t of targets) {
    let p = await resolveInRoot(rootfs, t);
    while (p !== rootfs && p.startsWith(`${rootfs}/`) && (await missing(p))) {
      if (!out.includes(p)) out.push(p);
      p = dirname(p);
    }
  }
  return out;
}

function nsToSeconds(ns: bigint): number {
  return Number(ns / 1000n) / 1e6;
}

export async function removeMountStubs(rootfs: string, stubs: string[]): Promise<void> {
  // Deepest first: /etc/hosts and /etc/resolv.conf must go before /etc can.
  const ordered = [...stubs].sort((a, b) => b.split('/').length - a.split('/').length);
  for (const p of ordered) {
    // Re-resolve: the step may have replaced a parent with a symlink pointing elsewhere.
    if ((await resolveInRoot(rootfs, p.slice(rootfs.length))) !== p) continue;
    const parent = dirname(p);
    if ((await resolveInRoot(rootfs, parent.slice(rootfs.length))) !== parent) continue;
    try {
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
}
