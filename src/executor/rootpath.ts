// Paths inside a rootfs, resolved the way the container will see them: symlinks are followed
// inside the rootfs only (an absolute link target counts from the rootfs, `..` stops at its
// root), so a hostile image cannot make strata read or create files on the host.
import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.js';

const MAX_LINKS = 255;

function components(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/**
 * Host path of in-container path `p` below `root`, with every existing symlink resolved inside
 * `root`. Components that do not exist are kept as written (`..` after them is lexical).
 */
export async function resolveInRoot(root: string, p: string): Promise<string> {
  const pending = components(p);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const name = pending.shift() as string;
    if (name === '..') {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, name);
    let isLink = false;
    try {
      isLink = (await lstat(host)).isSymbolicLink();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
    if (!isLink) {
      resolved.push(name);
      continue;
    }
    if (++links > MAX_LINKS) {
      throw new StrataError('SYMLINK_LOOP', `too many levels of symbolic links resolving ${p} inside ${root}`, {
        hint: 'fix the symlink cycle in the image',
      });
    }
    const target = await readlink(host);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...components(target));
  }
  return join(root, ...resolved);
}
