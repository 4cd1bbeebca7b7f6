// Reading an overlay upper (or a lower) dir: a tree of entries with their stat, xattrs and
// overlay markers. Paths are binary strings (latin1), as in the tar code, so names that are
// not UTF-8 survive; fs calls get Buffers.
import { constants as fsc, type BigIntStats } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { getAttribute, listAttributes } from 'fs-xattr';
import { StrataError } from '../errors.js';
import { OPAQUE_XATTR, isOverlayXattr } from './overlay-rewrite.js';

export type NodeKind = 'dir' | 'file' | 'symlink' | 'whiteout' | 'char' | 'block' | 'fifo' | 'socket';

export interface FsNode {
  /** relative path from the walked root, binary string, no leading slash */
  path: string;
  name: string;
  kind: NodeKind;
  st: BigIntStats;
  /** non-overlay xattrs */
  xattrs: Map<string, Buffer>;
  opaque: boolean;
  /** symlink target (binary string) */
  linkname: string;
  children: FsNode[];
}

// O_PATH is not exported by Node; its value is the same on every Linux architecture Node runs on.
const O_PATH = 0o10000000;

export function hostPath(root: string, rel: string): Buffer {
  return rel === '' ? Buffer.from(root) : Buffer.concat([Buffer.from(`${root}/`), Buffer.from(rel, 'latin1')]);
}

function kindOf(st: BigIntStats): NodeKind {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return st.rdev === 0n ? 'whiteout' : 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** fs-xattr takes string paths; names that are not UTF-8 go through /proc/self/fd. */
async function withStringPath<T>(p: Buffer, fn: (path: string) => Promise<T>): Promise<T> {
  const s = p.toString('utf8');
  if (Buffer.from(s, 'utf8').equals(p)) return fn(s);
  const fh = await open(p, O_PATH | fsc.O_NOFOLLOW);
  try {
    return await fn(`/proc/self/fd/${fh.fd}`);
  } finally {
    await fh.close();
  }
}

export interface XattrInfo {
  xattrs: Map<string, Buffer>;
  opaque: boolean;
}

/** xattrs of a file or dir (never of a symlink: the calls would follow it). */
export async function readXattrs(p: Buffer): Promise<XattrInfo> {
  return withStringPath(p, async (path) => {
    const xattrs = new Map<string, Buffer>();
    let opaque = false;
    let names: string[];
    try {
      names = await listAttributes(path);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOTSUP') return { xattrs, opaque };
      throw e;
    }
    for (const name of names.sort()) {
      if (isOverlayXattr(name)) {
        const short = name.slice(name.indexOf('.overlay.') + '.overlay.'.length);
        if (short === 'opaque') opaque = (await getAttribute(path, name)).toString('latin1') === 'y';
        else if (short === 'redirect' || short === 'metacopy') {
          throw new StrataError('OVERLAY_FEATURE', `${path} carries ${name}: this upper was written with redirect_dir or metacopy on, so it is not a complete layer`, {
            hint: 'Mount build overlays with redirect_dir=off,metacopy=off (mountOverlay does).',
          });
        }
        continue;
      }
      try {
        xattrs.set(name, await getAttribute(path, name));
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENODATA') throw e;
      }
    }
    return { xattrs, opaque };
  });
}

async function node(root: string, rel: string, name: string, st: BigIntStats): Promise<FsNode> {
  const kind = kindOf(st);
  const p = hostPath(root, rel);
  let xattrs = new Map<string, Buffer>();
  let opaque = false;
  let linkname = '';
  if (kind === 'symlink') linkname = ((await readlink(p, { encoding: 'buffer' })) as Buffer).toString('latin1');
  else if (kind !== 'whiteout' && kind !== 'socket') ({ xattrs, opaque } = await readXattrs(p));
  return { path: rel, name, kind, st, xattrs, opaque: kind === 'dir' && opaque, linkname, children: [] };
}

async function fillChildren(root: string, dir: FsNode): Promise<void> {
  const names = ((await readdir(hostPath(root, dir.path), { encoding: 'buffer' })) as Buffer[]).map((b) => b.toString('latin1'));
  names.sort();
  dir.children = await Promise.all(
    names.map(async (name) => {
      const rel = dir.path === '' ? name : `${dir.path}/${name}`;
      return node(root, rel, name, await lstat(hostPath(root, rel), { bigint: true }));
    }),
  );
  for (const child of dir.children) if (child.kind === 'dir') await fillChildren(root, child);
}

/** The whole tree under root (the root node has path ''). Symlinks are never followed. */
export async function walkTree(root: string): Promise<FsNode> {
  const st = await lstat(root, { bigint: true });
  if (!st.isDirectory()) throw new StrataError('NOT_A_DIRECTORY', `${root} is not a directory`);
  const top: FsNode = { path: '', name: '', kind: 'dir', st, xattrs: new Map(), opaque: false, linkname: '', children: [] };
  await fillChildren(root, top);
  return top;
}

async function lstatOrNull(p: Buffer): Promise<BigIntStats | null> {
  try {
    return await lstat(p, { bigint: true });
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
}

/**
 * What the stack of lowers (top-most first) shows at `rel`, with overlayfs's rules: a whiteout
 * or a non-directory hides everything below it, an opaque directory hides the same directory
 * of the layers below. Never follows a symlink.
 */
export async function lookupInLowers(lowers: string[], rel: string): Promise<{ layer: string; st: BigIntStats } | null> {
  const parts = rel.split('/');
  for (const layer of lowers) {
    let prefix = '';
    let sealed = false; // an opaque ancestor: layers further down cannot contribute
    let missing = false;
    for (let i = 0; i < parts.length; i++) {
      prefix = prefix === '' ? parts[i]! : `${prefix}/${parts[i]}`;
      const st = await lstatOrNull(hostPath(layer, prefix));
      if (st === null) {
        missing = true;
        break;
      }
      const kind = kindOf(st);
      if (kind === 'whiteout') return null;
      if (i === parts.length - 1) return { layer, st };
      if (kind !== 'dir') return null;
      if ((await readXattrs(hostPath(layer, prefix))).opaque) sealed = true;
    }
    if (missing && sealed) return null;
  }
  return null;
}
