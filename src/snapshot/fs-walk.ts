// Reading an overlay upper (or a lower) dir: a tree of entries with their stat, xattrs and
// overlay markers. Paths are binary strings (latin1), as in the tar code, so names that are
// not UTF-8 survive; fs calls get Buffers.
import { closeSync, constants as fsc, lstatSync, openSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { getAttributeSync, listAttributesSync } from 'fs-xattr';
import { StrataError } from '../errors.js';
import { OPAQUE_XATTR, isOverlayXattr } from './overlay-rewrite.js';

// The walk uses synchronous calls on purpose: one lstat or listxattr is a couple of
// microseconds, while its promise version costs tens of microseconds of main-thread time
// (measured: a 49k-file tree took 2.5 s async, see walkTree for how the loop stays responsive).

export type NodeKind = 'dir' | 'file' | 'symlink' | 'whiteout' | 'char' | 'block' | 'fifo' | 'socket';

export interface FsNode {
  /** relative path from the walked root, binary string, no leading slash */
  path: string;
  name: string;
  kind: NodeKind;
  st: Stats;
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

function kindOf(st: Stats): NodeKind {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return st.rdev === 0 ? 'whiteout' : 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** fs-xattr takes string paths; names that are not UTF-8 go through /proc/self/fd. */
function withStringPath<T>(p: Buffer, fn: (path: string) => T): T {
  const s = p.toString('utf8');
  if (Buffer.from(s, 'utf8').equals(p)) return fn(s);
  const fd = openSync(p, O_PATH | fsc.O_NOFOLLOW);
  try {
    return fn(`/proc/self/fd/${fd}`);
  } finally {
    closeSync(fd);
  }
}

export interface XattrInfo {
  xattrs: Map<string, Buffer>;
  opaque: boolean;
}

function errCode(e: unknown): string | undefined {
  return (e as { code?: string } | null)?.code;
}

/** xattrs of a file or dir (never of a symlink: the calls would follow it). */
export function readXattrs(p: Buffer): XattrInfo {
  return withStringPath(p, (path) => {
    const xattrs = new Map<string, Buffer>();
    let opaque = false;
    let names: string[];
    try {
      names = listAttributesSync(path);
    } catch (e) {
      if (errCode(e) === 'ENOTSUP') return { xattrs, opaque };
      throw e;
    }
    for (const name of names.sort()) {
      if (isOverlayXattr(name)) {
        const short = name.slice(name.indexOf('.overlay.') + '.overlay.'.length);
        if (name === OPAQUE_XATTR || short === 'opaque') opaque = getAttributeSync(path, name).toString('latin1') === 'y';
        else if (short === 'redirect' || short === 'metacopy') {
          throw new StrataError('OVERLAY_FEATURE', `${path} carries ${name}: this upper was written with redirect_dir or metacopy on, so it is not a complete layer`, {
            hint: 'Mount build overlays with redirect_dir=off,metacopy=off (mountOverlay does).',
          });
        }
        continue;
      }
      try {
        xattrs.set(name, getAttributeSync(path, name));
      } catch (e) {
        if (errCode(e) !== 'ENODATA') throw e;
      }
    }
    return { xattrs, opaque };
  });
}

function node(root: string, rel: string, name: string, st: Stats): FsNode {
  const kind = kindOf(st);
  const p = hostPath(root, rel);
  let xattrs = new Map<string, Buffer>();
  let opaque = false;
  let linkname = '';
  if (kind === 'symlink') linkname = readlinkSync(p, { encoding: 'buffer' }).toString('latin1');
  else if (kind !== 'whiteout' && kind !== 'socket') ({ xattrs, opaque } = readXattrs(p));
  return { path: rel, name, kind, st, xattrs, opaque: kind === 'dir' && opaque, linkname, children: [] };
}

function fillChildren(root: string, dir: FsNode): void {
  const names = readdirSync(hostPath(root, dir.path), { encoding: 'buffer' }).map((b) => b.toString('latin1'));
  names.sort();
  dir.children = names.map((name) => {
    const rel = dir.path === '' ? name : `${dir.path}/${name}`;
    return node(root, rel, name, lstatSync(hostPath(root, rel)));
  });
}

const SLICE_MS = 20;

/**
 * The whole tree under root (the root node has path ''). Symlinks are never followed. Works in
 * slices of ~20 ms and lets the event loop run in between.
 */
export async function walkTree(root: string): Promise<FsNode> {
  const st = lstatSync(root);
  if (!st.isDirectory()) throw new StrataError('NOT_A_DIRECTORY', `${root} is not a directory`);
  const top: FsNode = { path: '', name: '', kind: 'dir', st, xattrs: new Map(), opaque: false, linkname: '', children: [] };
  const pending: FsNode[] = [top];
  let slice = Date.now();
  while (pending.length > 0) {
    const dir = pending.pop()!;
    fillChildren(root, dir);
    for (const child of dir.children) if (child.kind === 'dir') pending.push(child);
    if (Date.now() - slice > SLICE_MS) {
      await new Promise((r) => setImmediate(r));
      slice = Date.now();
    }
  }
  return top;
}

function lstatOrNull(p: Buffer): Stats | null {
  try {
    return lstatSync(p);
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
}

/**
 * What the stack of lowers (top-most first) shows at `rel`, with overlayfs's rules: a whiteout
 * or a non-directory hides everything below it, an opaque directory hides the same directory
 * of the layers below. Never follows a symlink.
 */
export function lookupInLowers(lowers: string[], rel: string): { layer: string; st: Stats } | null {
  const parts = rel.split('/');
  for (const layer of lowers) {
    let prefix = '';
    let sealed = false; // an opaque ancestor: layers further down cannot contribute
    let missing = false;
    for (let i = 0; i < parts.length; i++) {
      prefix = prefix === '' ? parts[i]! : `${prefix}/${parts[i]}`;
      const st = lstatOrNull(hostPath(layer, prefix));
      if (st === null) {
        missing = true;
        break;
      }
      const kind = kindOf(st);
      if (kind === 'whiteout') return null;
      if (i === parts.length - 1) return { layer, st };
      if (kind !== 'dir') return null;
      if (readXattrs(hostPath(layer, prefix)).opaque) sealed = true;
    }
    if (missing && sealed) return null;
  }
  return null;
}
