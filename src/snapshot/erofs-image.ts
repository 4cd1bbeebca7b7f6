// An uncompressed EROFS image written from a stream of layer entries (the Linux kernel's read-only
// filesystem: fs/erofs/erofs_fs.h has the format). Nothing is compressed, so writing the image
// costs about what copying the file contents does, and the kernel reads it with no decompression.
//
// Layout, 4 KiB blocks: block 0 holds the superblock (at byte 1024); then every file's, symlink's
// and directory's data, each starting on a block (the flat, plain layout: `raw_blkaddr` and
// `i_size`), files in the order they come, directories at the end; then the metadata area
// (`meta_blkaddr`): one 64-byte extended inode per inode (32-bit ids, 64-bit sizes and mtimes)
// followed by its inline xattrs, the root first (its nid must fit in 16 bits). File
// data is written as it arrives; the tree (names, inodes, xattrs) is kept in memory until the end,
// because a directory's entries are sorted and name their children's inode numbers (nids).
import type { FileHandle } from 'node:fs/promises';
import type { EntryType, TarHeader } from './tar-format.js';

const BLOCK = 4096;
const BLKSZBITS = 12;
const SUPER_OFFSET = 1024;
const MAGIC = 0xe0f5e1e2;
const INODE_SIZE = 64;
const XATTR_HEADER = 12;
const DIRENT = 12;
/** Data is written in pieces of about this size. */
const FLUSH_AT = 1 << 20;
const ZEROS = Buffer.alloc(BLOCK);

const S_IFMT: Record<EntryType, number> = { file: 0o100000, dir: 0o040000, symlink: 0o120000, char: 0o020000, block: 0o060000, fifo: 0o010000, link: 0 };
const FILE_TYPE: Record<EntryType, number> = { file: 1, dir: 2, char: 3, block: 4, fifo: 5, symlink: 7, link: 0 };
const XATTR_INDEX: Array<[string, number]> = [
  ['user.', 1],
  ['trusted.', 4],
  ['security.', 6],
];

/** The entry cannot be written to the image exactly; the caller unpacks the layer instead. */
export class ErofsUnsupported extends Error {}

interface Inode {
  type: Exclude<EntryType, 'link'>;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  blkaddr: number;
  rdev: number;
  xattrs: Map<string, Buffer>;
  nlink: number;
  /** directories: name -> inode (names are binary strings: one char per byte) */
  children?: Map<string, Inode>;
  nid: number;
}

/** EROFS's short prefix index for an xattr name. POSIX ACLs are left out: the unpacker does not set them (--no-acls). */
function xattrIndex(name: string): { index: number; suffix: string } | undefined {
  for (const [prefix, index] of XATTR_INDEX) if (name.startsWith(prefix) && name.length > prefix.length) return { index, suffix: name.slice(prefix.length) };
  return undefined;
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** The inline xattr body of an inode (header and entries), or an empty buffer. */
function xattrBody(xattrs: Map<string, Buffer>): Buffer {
  if (xattrs.size === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [Buffer.alloc(XATTR_HEADER)];
  for (const [name, value] of [...xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const { index, suffix } = xattrIndex(name)!;
    const nameBytes = Buffer.from(suffix, 'latin1');
    const entry = Buffer.alloc(align(4 + nameBytes.length + value.length, 4));
    entry.writeUInt8(nameBytes.length, 0);
    entry.writeUInt8(index, 1);
    entry.writeUInt16LE(value.length, 2);
    nameBytes.copy(entry, 4);
    value.copy(entry, 4 + nameBytes.length);
    parts.push(entry);
  }
  return Buffer.concat(parts);
}

/** Linux's new_encode_dev. */
function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export class ErofsWriter {
  private readonly root: Inode = ErofsWriter.inode('dir', 0o755, 0, 0, 0);
  /** Next free byte of the data area (block-aligned between files). */
  private pos = BLOCK;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private pendingAt = BLOCK;

  constructor(private readonly fh: FileHandle) {}

  private static inode(type: Inode['type'], perm: number, uid: number, gid: number, mtime: number): Inode {
    return { type, mode: S_IFMT[type] | (perm & 0o7777), uid, gid, mtime, size: 0, blkaddr: 0, rdev: 0, xattrs: new Map(), nlink: 1, nid: 0, children: type === 'dir' ? new Map() : undefined };
  }

  /** Throws ErofsUnsupported when the image would not hold `h` exactly as an unpacker lays it down. */
  static check(h: TarHeader): void {
    const unsupported = (what: string) => new ErofsUnsupported(`${JSON.stringify(h.name)}: ${what}`);
    // A pax mtime with a fraction is parsed into a double, which cannot carry nanoseconds at
    // today's dates; GNU tar sets them exactly from the text.
    if (!Number.isSafeInteger(h.mtime)) throw unsupported(`mtime ${h.mtime} is not whole seconds`);
    if (!(h.uid >= 0 && h.uid < 2 ** 32 && h.gid >= 0 && h.gid < 2 ** 32)) throw unsupported(`owner ${h.uid}:${h.gid}`);
    for (const [k, v] of h.xattrs) {
      const x = xattrIndex(k);
      if (!x) throw unsupported(`xattr ${k}`);
      if (x.suffix.length > 255 || v.length > 0xffff) throw unsupported(`xattr ${k} of ${v.length} bytes`);
    }
    if ((h.type === 'char' || h.type === 'block') && (h.devmajor >= 4096 || h.devminor >= 1 << 20)) throw unsupported(`device ${h.devmajor}:${h.devminor}`);
    for (const part of h.name.split('/')) if (part.length > 255) throw unsupported('a name longer than 255 bytes');
  }

  private dirOf(path: string): Inode {
    let dir = this.root;
    if (path === '') return dir;
    for (const part of path.split('/')) {
      let next = dir.children!.get(part);
      if (!next) {
        // Parents the layer does not list: as GNU tar makes them (the rewriter names them all anyway).
        next = ErofsWriter.inode('dir', 0o755, 0, 0, 0);
        dir.children!.set(part, next);
      } else if (next.type !== 'dir') throw new ErofsUnsupported(`${JSON.stringify(path)}: below a non-directory`);
      dir = next;
    }
    return dir;
  }

  private split(name: string): [Inode, string] {
    const slash = name.lastIndexOf('/');
    return [this.dirOf(slash === -1 ? '' : name.slice(0, slash)), name.slice(slash + 1)];
  }

  private lookup(name: string): Inode | undefined {
    const [dir, base] = this.split(name);
    return dir.children!.get(base);
  }

  /**
   * Adds one entry in overlay form (names relative to the root, checked by OverlayRewriter).
   * A file's body must be passed as `body` and is written now. An entry that replaces an earlier
   * one of this layer replaces it, as GNU tar does; a directory's attributes are updated in place;
   * a directory replaced by anything else is not supported.
   */
  async add(h: TarHeader, body?: AsyncIterable<Buffer>): Promise<void> {
    ErofsWriter.check(h);
    if (h.name === '') throw new Error('the root is not an entry');
    const [dir, base] = this.split(h.name);
    const existing = dir.children!.get(base);
    if (h.type === 'dir') {
      if (existing && existing.type !== 'dir') this.unlink(dir, base, existing);
      const node = existing?.type === 'dir' ? existing : ErofsWriter.inode('dir', 0, 0, 0, 0);
      node.mode = S_IFMT.dir | (h.mode & 0o7777);
      node.uid = h.uid;
      node.gid = h.gid;
      node.mtime = h.mtime;
      // A directory listed again keeps the xattrs it had, as setxattr(2) on the existing one does.
      for (const [k, v] of h.xattrs) node.xattrs.set(k, v);
      dir.children!.set(base, node);
      return;
    }
    if (existing?.type === 'dir') throw new ErofsUnsupported(`${JSON.stringify(h.name)}: a directory replaced by a ${h.type}`);
    if (h.type === 'link') {
      const target = this.lookup(h.linkname);
      if (!target || target.type === 'dir') throw new ErofsUnsupported(`${JSON.stringify(h.name)}: hard link to ${JSON.stringify(h.linkname)}`);
      if (existing === target) return;
      if (existing) this.unlink(dir, base, existing);
      target.nlink++;
      dir.children!.set(base, target);
      return;
    }
    if (existing) this.unlink(dir, base, existing);
    // Linux gives every symlink 0777 whatever the archive says (as GNU tar's symlinks have).
    const node = ErofsWriter.inode(h.type, h.type === 'symlink' ? 0o777 : h.mode, h.uid, h.gid, h.mtime);
    node.xattrs = new Map(h.xattrs);
    if (h.type === 'char' || h.type === 'block') node.rdev = encodeDev(h.devmajor, h.devminor);
    if (h.type === 'symlink') await this.data(node, [Buffer.from(h.linkname, 'latin1')]);
    if (h.type === 'file') await this.data(node, body ?? [], h.size);
    dir.children!.set(base, node);
  }

  /** Sets an xattr on a directory added earlier ('' is the root), e.g. overlayfs's opaque mark. */
  setDirXattr(path: string, name: string, value: Buffer): void {
    const node = path === '' ? this.root : this.lookup(path);
    if (node?.type !== 'dir') throw new Error(`${JSON.stringify(path)} is not a directory of the image`);
    node.xattrs.set(name, value);
  }

  private unlink(dir: Inode, base: string, node: Inode): void {
    node.nlink--;
    dir.children!.delete(base);
  }

  /** Appends a body to the data area (starting on a block); `expected` checks its length. */
  private async data(node: Inode, body: AsyncIterable<Buffer> | Buffer[], expected?: number): Promise<void> {
    const start = this.pos;
    let size = 0;
    for await (const chunk of body) {
      size += chunk.length;
      await this.append(chunk);
    }
    if (expected !== undefined && size !== expected) throw new Error(`${size} bytes of data, the header said ${expected}`);
    node.size = size;
    node.blkaddr = size === 0 ? 0 : start / BLOCK;
    const pad = align(this.pos, BLOCK) - this.pos;
    if (pad) await this.append(ZEROS.subarray(0, pad));
  }

  private async append(chunk: Buffer): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.pos += chunk.length;
    if (this.pendingBytes >= FLUSH_AT) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const bufs = this.pending;
    const at = this.pendingAt;
    const total = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.pendingAt += total;
    let written = 0;
    // writev may write less than asked; go on from where it stopped.
    while (written < total) {
      const r = await this.fh.writev(written === 0 ? bufs : remaining(bufs, written), at + written);
      if (r.bytesWritten === 0) throw new Error('short write to the layer image');
      written += r.bytesWritten;
    }
  }

  /** Writes the directories, the inodes and the superblock. */
  async finish(): Promise<void> {
    // nids: the root first, then breadth first; an inode and its xattrs never cross a block.
    const order: Inode[] = [];
    const seen = new Set<Inode>();
    const queue: Inode[] = [this.root];
    for (let next = 0; next < queue.length; next++) {
      const node = queue[next]!;
      if (seen.has(node)) continue;
      seen.add(node);
      order.push(node);
      if (node.children) for (const child of node.children.values()) if (!seen.has(child)) queue.push(child);
    }
    const xattrBodies = new Map<Inode, Buffer>();
    let metaOffset = 0;
    for (const node of order) {
      const xb = xattrBody(node.xattrs);
      xattrBodies.set(node, xb);
      const size = INODE_SIZE + xb.length;
      if ((metaOffset % BLOCK) + size > BLOCK && size <= BLOCK) metaOffset = align(metaOffset, BLOCK);
      node.nid = metaOffset / 32;
      metaOffset = align(metaOffset + size, 32);
    }
    if (this.root.nid !== 0) throw new Error('the root inode must come first');

    // Directories: sorted entries (with . and ..) in blocks of dirents then names.
    const parents = new Map<Inode, Inode>([[this.root, this.root]]);
    for (const node of order) if (node.children) for (const child of node.children.values()) if (child.children && !parents.has(child)) parents.set(child, node);
    for (const node of order) {
      if (!node.children) continue;
      let subdirs = 0;
      const entries: Array<[string, Inode]> = [
        ['.', node],
        ['..', parents.get(node)!],
      ];
      for (const [name, child] of node.children) {
        entries.push([name, child]);
        if (child.children) subdirs++;
      }
      node.nlink = 2 + subdirs;
      entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      await this.data(node, dirBlocks(entries));
    }
    await this.flush();

    const metaBlkaddr = this.pos / BLOCK;
    const meta = Buffer.alloc(align(metaOffset, BLOCK));
    order.forEach((node, i) => {
      const off = node.nid * 32;
      meta.writeUInt16LE(1, off); // extended inode, flat plain data
      const xb = xattrBodies.get(node)!;
      meta.writeUInt16LE(xb.length === 0 ? 0 : (xb.length - XATTR_HEADER) / 4 + 1, off + 2);
      meta.writeUInt16LE(node.mode, off + 4);
      meta.writeBigUInt64LE(BigInt(node.size), off + 8);
      meta.writeUInt32LE(node.type === 'char' || node.type === 'block' ? node.rdev : node.blkaddr, off + 16);
      meta.writeUInt32LE(i + 1, off + 20);
      meta.writeUInt32LE(node.uid, off + 24);
      meta.writeUInt32LE(node.gid, off + 28);
      meta.writeBigInt64LE(BigInt(node.mtime), off + 32);
      meta.writeUInt32LE(node.nlink, off + 44);
      xb.copy(meta, off + INODE_SIZE);
    });
    await this.fh.write(meta, 0, meta.length, this.pos);
    const blocks = metaBlkaddr + meta.length / BLOCK;

    const sb = Buffer.alloc(128);
    sb.writeUInt32LE(MAGIC, 0);
    sb.writeUInt8(BLKSZBITS, 12);
    sb.writeUInt16LE(this.root.nid, 14);
    sb.writeBigUInt64LE(BigInt(order.length), 16);
    sb.writeUInt32LE(blocks, 36);
    sb.writeUInt32LE(metaBlkaddr, 40);
    await this.fh.write(sb, 0, sb.length, SUPER_OFFSET);
    await this.fh.truncate(blocks * BLOCK);
  }
}

/** What is left of `bufs` after the first `skip` bytes. */
function remaining(bufs: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

/** A directory's data: blocks of 12-byte dirents followed by their names, entries sorted bytewise. */
function dirBlocks(entries: Array<[string, Inode]>): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < entries.length) {
    // As many entries as fit in one block.
    let n = 0;
    let used = 0;
    while (i + n < entries.length && used + DIRENT + entries[i + n]![0].length <= BLOCK) {
      used += DIRENT + entries[i + n]![0].length;
      n++;
    }
    const last = i + n === entries.length;
    const block = Buffer.alloc(last ? used : BLOCK);
    let nameoff = n * DIRENT;
    for (let k = 0; k < n; k++) {
      const [name, node] = entries[i + k]!;
      const at = k * DIRENT;
      block.writeBigUInt64LE(BigInt(node.nid), at);
      block.writeUInt16LE(nameoff, at + 8);
      block.writeUInt8(FILE_TYPE[node.type], at + 10);
      block.write(name, nameoff, 'latin1');
      nameoff += name.length;
    }
    out.push(block);
    i += n;
  }
  return out;
}
