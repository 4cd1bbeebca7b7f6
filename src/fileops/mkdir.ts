// `mkdir -p` inside a rootfs: existing components are resolved as the rootfs sees them (its
// symlinks stay inside it), missing ones are created with a given mode and owner.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StrataError } from '../errors.js';
import { resolveInside } from '../context/walk.js';

export interface Owner {
  uid: number;
  gid: number;
}

/**
 * Create `hostPath` and its missing parents (a path already resolved inside its root, so every
 * existing ancestor is a real directory). Returns the dirs it created, outermost first.
 */
export async function mkdirAllHost(hostPath: string, mode: number, owner?: Owner): Promise<string[]> {
  const missing: string[] = [];
  let p = hostPath;
  for (;;) {
    try {
      const st = await fsp.lstat(p);
      if (!st.isDirectory()) {
        throw new StrataError('COPY_DEST_CONFLICT', `cannot create directory ${hostPath}: ${p} exists and is not a directory`, {
          hint: 'A file (or symlink) is in the way of the destination path; remove it first or pick another destination.',
        });
      }
      break;
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOENT') throw e;
      missing.push(p);
      const up = path.dirname(p);
      if (up === p) break;
      p = up;
    }
  }
  const created: string[] = [];
  for (const d of missing.reverse()) {
    try {
      await fsp.mkdir(d);
    } catch (e) {
      if ((e as { code?: string }).code !== 'EEXIST' || !(await fsp.lstat(d)).isDirectory()) throw e;
      continue;
    }
    await fsp.chmod(d, mode);
    if (owner) await fsp.lchown(d, owner.uid, owner.gid);
    created.push(d);
  }
  return created;
}

/** `mkdir -p` of an in-root path; returns the host path and the dirs created. */
export async function mkdirAllInside(root: string, inRoot: string, mode: number, owner?: Owner): Promise<{ host: string; created: string[] }> {
  const r = await resolveInside(root, inRoot);
  if (r.lstat) {
    if (!r.lstat.isDirectory()) {
      throw new StrataError('COPY_DEST_CONFLICT', `cannot create directory /${r.rel}: a file with that name exists`, {
        hint: 'Remove the file or choose another path.',
      });
    }
    return { host: r.host, created: [] };
  }
  return { host: r.host, created: await mkdirAllHost(r.host, mode, owner) };
}
