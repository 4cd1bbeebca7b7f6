// Turns the entries of an OCI layer tar into the entries of the same layer in overlayfs form,
// refusing anything that could write outside the layer directory.
//
// Path policy (documented choice): a member name is taken relative to the layer root, so a
// leading "/" is dropped (as Docker and GNU tar do), "." and empty components are dropped, and
// ".." removes the previous component. A name that climbs above the root ("../x",
// "/abs/../../x") is refused rather than clamped to the root (containerd clamps, Docker refuses):
// such names never come out of a real image builder. Hard-link targets follow the same rule and
// must name a non-directory written earlier in this layer. An entry whose parent directory is a
// symbolic link written earlier in this layer is refused: following it is how "symlink then
// write through it" layers escape. Symlink targets themselves are never checked, because
// nothing here follows them.
import { StrataError } from '../errors.js';
import type { TarHeader } from './tar-format.js';

export type Kind = 'dir' | 'symlink' | 'file' | 'whiteout';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
export const OPAQUE_XATTR = 'trusted.overlay.opaque';

/** xattrs only overlayfs itself may set: a layer that carries them is forging overlay state. */
export function isOverlayXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');
}

/** "a/./b//c" -> "a/b/c"; null when the name leaves the root. */
export function normalizeMemberPath(name: string): string | null {
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.length === 0) return null;
      parts.pop();
      continue;
    }
    parts.push(c);
  }
  return parts.join('/');
}

function shortLabel(label: string): string {
  return /^sha256:[0-9a-f]{64}$/.test(label) ? `${label.slice(0, 19)}…` : label;
}

/** Names are binary strings; show them as UTF-8 when they are. */
function show(name: string): string {
  return JSON.stringify(Buffer.from(name, 'latin1').toString('utf8'));
}

export class OverlayRewriter {
  private readonly kinds = new Map<string, Kind>([['', 'dir']]);
  /** paths removed by a whiteout of this layer, kept after an entry reuses the name */
  private readonly whitedOut = new Set<string>();
  /** directories that must hide everything below them (trusted.overlay.opaque=y) */
  readonly opaque = new Set<string>();

  constructor(private readonly label: string) {}

  private unsafe(entry: string, why: string): StrataError {
    return new StrataError('UNSAFE_LAYER', `layer ${shortLabel(this.label)}: entry ${show(entry)} ${why}`, {
      hint: 'The layer tar was crafted to write outside its root filesystem; strata refuses to unpack it. Check where the image comes from.',
    });
  }

  private invalid(entry: string, why: string): StrataError {
    return new StrataError('BAD_LAYER', `layer ${shortLabel(this.label)}: entry ${show(entry)} ${why}`, {
      hint: 'The layer tar is malformed; rebuild or re-pull the image.',
    });
  }

  /** Makes sure every ancestor of `dir` is a directory, synthesising missing ones. */
  private parents(entry: string, dir: string, mtime: number, out: TarHeader[]): void {
    if (dir === '') return;
    let prefix = '';
    for (const part of dir.split('/')) {
      prefix = prefix === '' ? part : `${prefix}/${part}`;
      const kind = this.kinds.get(prefix);
      if (kind === 'dir') continue;
      if (kind === 'symlink') {
        throw this.unsafe(entry, `would be written through the symbolic link ${show(prefix)} created earlier in this layer, which could point outside the root filesystem`);
      }
      if (kind === 'file') throw this.invalid(entry, `lies below ${show(prefix)}, which this layer made a non-directory`);
      // missing (or whited out, i.e. deleted from the layers below): a fresh directory, as
      // Docker and containerd create for tars that omit parent entries
      if (kind === 'whiteout') this.opaque.add(prefix);
      this.kinds.set(prefix, 'dir');
      out.push({ name: prefix, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map() });
    }
  }

  private forget(path: string): void {
    const below = `${path}/`;
    for (const p of this.kinds.keys()) if (p.startsWith(below)) this.kinds.delete(p);
    for (const p of this.opaque) if (p === path || p.startsWith(below)) this.opaque.delete(p);
  }

  /** The entries to hand to the extractor for one input entry (maybe none). */
  plan(h: TarHeader): TarHeader[] {
    const path = normalizeMemberPath(h.name);
    if (path === null) throw this.unsafe(h.name, 'would be written outside the root filesystem');
    if (path === '') return []; // the root itself: its attributes come from the upper dir of each mount
    const slash = path.lastIndexOf('/');
    const dir = slash === -1 ? '' : path.slice(0, slash);
    const base = path.slice(slash + 1);
    const out: TarHeader[] = [];
    this.parents(h.name, dir, h.mtime, out);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === OPAQUE_MARKER) {
        this.opaque.add(dir);
        return out;
      }
      if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return out; // AUFS metadata, ignored as Docker does
      const name = base.slice(WHITEOUT_PREFIX.length);
      if (name === '.' || name === '..') throw this.unsafe(h.name, 'is a whiteout for a path outside its directory');
      const target = dir === '' ? name : `${dir}/${name}`;
      const existing = this.kinds.get(target);
      this.whitedOut.add(target);
      // A whiteout hides the layers below only; an entry of this layer with the same name
      // stays. A directory of this layer that replaces a deleted one must hide the old contents.
      if (existing === 'dir') this.opaque.add(target);
      if (existing !== undefined) return out;
      this.kinds.set(target, 'whiteout');
      out.push({ name: target, type: 'char', mode: 0, uid: 0, gid: 0, size: 0, mtime: h.mtime, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map() });
      return out;
    }

    let linkname = h.linkname;
    if (h.type === 'link') {
      const target = normalizeMemberPath(h.linkname);
      if (target === null) throw this.unsafe(h.name, `is a hard link to ${show(h.linkname)}, outside the root filesystem`);
      const tslash = target.lastIndexOf('/');
      let prefix = '';
      for (const part of tslash === -1 ? [] : target.slice(0, tslash).split('/')) {
        prefix = prefix === '' ? part : `${prefix}/${part}`;
        const kind = this.kinds.get(prefix);
        if (kind === 'symlink') {
          throw this.unsafe(h.name, `is a hard link through the symbolic link ${show(prefix)} created earlier in this layer`);
        }
        if (kind !== 'dir') break;
      }
      const kind = this.kinds.get(target);
      if (target === path || (kind !== 'file' && kind !== 'symlink')) {
        throw this.invalid(h.name, `is a hard link to ${show(h.linkname)}, which is not a file written earlier in this layer`);
      }
      linkname = target;
    }

    const existing = this.kinds.get(path);
    if (existing === 'symlink') {
      // GNU tar lays absolute and ".." symlinks down as placeholders and swaps them in at the
      // end; a second entry of the same name can reuse the placeholder's inode and get the link
      // back. Real image builders never write a path twice, so refuse instead of guessing.
      throw this.invalid(h.name, 'replaces a symbolic link written earlier in this layer; strata does not unpack layers that define a symlink twice');
    }
    if (existing === 'dir' && h.type !== 'dir') this.forget(path);
    if (h.type === 'dir' && this.whitedOut.has(path)) this.opaque.add(path);
    const isWhiteoutNode = h.type === 'char' && h.devmajor === 0 && h.devminor === 0;
    this.kinds.set(path, h.type === 'dir' ? 'dir' : h.type === 'symlink' ? 'symlink' : isWhiteoutNode ? 'whiteout' : 'file');

    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of h.xattrs) if (!isOverlayXattr(k)) xattrs.set(k, v);
    out.push({ ...h, name: path, linkname, xattrs });
    return out;
  }
}
