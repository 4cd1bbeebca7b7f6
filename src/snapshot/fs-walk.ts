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
  return withStringPath(p, xattrsAt);
}

/** Shared by every walked entry without xattrs; nothing may modify it. */
const NO_XATTRS: XattrInfo = { xattrs: new Map<string, Buffer>(), opaque: false };

/** readXattrs for a path already known as a string. */
function xattrsAt(path: string): XattrInfo {
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
}

function isAscii(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) return false;
  return true;
}

const SLASH = Buffer.from('/');

interface PendingDir {
  node: FsNode;
  /** host path as bytes */
  host: Buffer;
  /** the same as a string, when it is valid UTF-8 (then fs-xattr can take it directly) */
  str: string | undefined;
}

/**
 * Fills in one directory's children and returns its subdirectories to visit. One path buffer per
 * child serves lstat, readlink and the xattr calls; children with ASCII names get their string path
 * by concatenation instead of a round trip through withStringPath. This runs for every entry of
 * every layer a step makes, so it avoids per-entry allocations it can.
 */
function fillChildren(dir: PendingDir): PendingDir[] {
  const names = readdirSync(dir.host, { encoding: 'buffer' });
  const entries = names.map((b) => ({ b, name: b.toString('latin1') }));
  entries.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const subdirs: PendingDir[] = [];
  const prefix = dir.node.path === '' ? '' : `${dir.node.path}/`;
  dir.node.children = entries.map(({ b, name }) => {
    const host = Buffer.concat([dir.host, SLASH, b]);
    const str = dir.str !== undefined && isAscii(b) ? `${dir.str}/${name}` : undefined;
    const st = lstatSync(host);
    const kind = kindOf(st);
    let x = NO_XATTRS;
    let linkname = '';
    if (kind === 'symlink') linkname = readlinkSync(host, { encoding: 'buffer' }).toString('latin1');
    else if (kind !== 'whiteout' && kind !== 'socket') {
      x = str !== undefined ? xattrsAt(str) : readXattrs(host);
      if (x.xattrs.size === 0 && !x.opaque) x = NO_XATTRS;
    }
    const child: FsNode = { path: prefix + name, name, kind, st, xattrs: x.xattrs, opaque: kind === 'dir' && x.opaque, linkname, children: [] };
    if (kind === 'dir') subdirs.push({ node: child, host, str });
    return child;
  });
  return subdirs;
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
  const pending: PendingDir[] = [{ node: top, host: Buffer.from(root), str: root }];
  let slice = Date.now();
  while (pending.length > 0) {
    pending.push(...fillChildren(pending.pop()!));
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
