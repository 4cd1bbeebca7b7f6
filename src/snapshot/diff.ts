// An overlay upper dir to a deterministic OCI layer blob.
//
// Same upper (and options) in, same bytes out: entries in path order (a directory, then its
// children by bytewise name), headers carry numeric ids only, no user/group names, no atime or
// ctime, mtimes in whole seconds (clamped to SOURCE_DATE_EPOCH when given), xattrs sorted, and
// the compressors run with fixed settings (zlib and zstd output does not depend on chunking or,
// for zstd -T0, on the number of threads).
import { closeSync, constants as fsc, createWriteStream, read, readSync } from 'node:fs';
import { rename, rm, rmdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { StrataError } from '../errors.js';
import { openNoAtime } from '../open-noatime.js';
import { BLOCK, END_OF_ARCHIVE, encodeHeader, padding, writeHeader, type TarHeader } from './tar-format.js';
import { OPAQUE_MARKER, WHITEOUT_PREFIX, normalizeMemberPath } from './overlay-rewrite.js';
import { hostPath, lookupInLowers, readXattrs, walkTree, type FsNode } from './fs-walk.js';
import { hashing, sha256, throughProcess } from './streams.js';
import { gzipMembers } from './compress.js';
import { TarSplice, type SpliceSource, type SplicedEntry } from './tar-splice.js';

export type LayerCompression = 'gzip' | 'zstd' | 'none';

export interface DiffOptions {
  /** the lowers of the mount the upper belonged to, top-most first */
  lowers: string[];
  /** where to write the blob (via out + '.tmp') */
  out: string;
  compression: LayerCompression;
  /** compression level; gzip 6 and zstd 3 by default */
  level?: number;
  sourceDateEpoch?: number;
  /** in-container absolute paths the runtime created as mount points; /proc, /dev, /sys always count */
  dropEmptyMountpoints?: string[];
  /** also remove the dropped mount-point dirs from the upper, so it stays equal to the blob */
  pruneUpper?: boolean;
  /** an older layer whose files the upper hard-links: their entries are copied from its tar (tar-splice.ts) */
  splice?: SpliceSource;
}

export interface DiffResult {
  /** sha256 of the uncompressed tar */
  diffId: string;
  /** sha256 of the blob */
  digest: string;
  /** bytes of the blob */
  size: number;
  mediaType: string;
  /** nothing changed once mount-point stubs are dropped; callers skip the layer */
  empty: boolean;
  /** in-container paths of the stub directories left out of the layer */
  dropped: string[];
  /** file entries copied from the older layer's tar (opts.splice) instead of read from their files */
  spliced: number;
  /**
   * Bytes the upper holds once the dropped stubs are gone (cache/store.ts ownDiskSize's rule: a
   * file linked from outside the upper counts there, not here).
   */
  diskSize: number;
}

export const MEDIA_TYPES: Record<LayerCompression, string> = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  none: 'application/vnd.oci.image.layer.v1.tar',
};

const ALWAYS_STUBS = ['/proc', '/dev', '/sys'];

/** The node at `path` (children are sorted by name, so each level is a binary search). */
function findNode(root: FsNode, path: string): FsNode | undefined {
  if (path === '') return root;
  let n: FsNode | undefined = root;
  for (const part of path.split('/')) {
    const c: FsNode[] = n.children;
    let lo = 0;
    let hi = c.length - 1;
    n = undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const name = c[mid]!.name;
      if (name === part) {
        n = c[mid];
        break;
      }
      if (name < part) lo = mid + 1;
      else hi = mid - 1;
    }
    if (!n) return undefined;
  }
  return n;
}

function parentPath(p: string): string {
  const i = p.lastIndexOf('/');
  return i === -1 ? '' : p.slice(0, i);
}

function sameXattrs(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (!b.get(k)?.equals(v)) return false;
  return true;
}

/**
 * Removes the empty directories runtimes create as mount points. A stub goes when it is an
 * empty, non-opaque dir of the upper that the lowers do not show; then its parents go too while
 * they are left empty and were either new (not in the lowers) or only copied up (same mode,
 * owner and xattrs as below: the copy-up happened because the stub was created in them).
 */
function dropStubs(root: FsNode, lowers: string[], stubs: string[]): string[] {
  const dropped: string[] = [];
  const remove = (n: FsNode): void => {
    const parent = findNode(root, parentPath(n.path))!;
    parent.children = parent.children.filter((c) => c !== n);
    dropped.push(n.path);
  };
  const candidates = [...new Set(stubs.map((s) => normalizeMemberPath(Buffer.from(s, 'utf8').toString('latin1'))))]
    .filter((p): p is string => p !== null && p !== '')
    .sort((a, b) => b.split('/').length - a.split('/').length || (a < b ? -1 : a > b ? 1 : 0));
  for (const stub of candidates) {
    const n = findNode(root, stub);
    if (!n || n.kind !== 'dir' || n.opaque || n.children.length > 0) continue;
    if (lookupInLowers(lowers, stub)) continue;
    remove(n);
    for (let p = parentPath(stub); p !== ''; p = parentPath(p)) {
      const up = findNode(root, p);
      if (!up || up.kind !== 'dir' || up.opaque || up.children.length > 0) break;
      const below = lookupInLowers(lowers, p);
      if (below) {
        if (!below.st.isDirectory()) break;
        const st = up.st;
        if (below.st.mode !== st.mode || below.st.uid !== st.uid || below.st.gid !== st.gid) break;
        if (!sameXattrs(readXattrs(hostPath(below.layer, p)).xattrs, up.xattrs)) break;
      }
      remove(up);
    }
  }
  return dropped;
}

/** ownDiskSize (cache/store.ts) of the walked tree, without walking it again. */
function diskSizeOf(root: FsNode): number {
  let total = 0;
  const multi = new Map<number, { links: number; seen: number; size: number }>();
  const visit = (n: FsNode): void => {
    if (n.kind === 'file' && n.st.nlink > 1) {
      const m = multi.get(n.st.ino);
      if (m) m.seen++;
      else multi.set(n.st.ino, { links: n.st.nlink, seen: 1, size: n.st.size });
    } else total += n.st.size;
    for (const c of n.children) visit(c);
  };
  visit(root);
  for (const m of multi.values()) if (m.seen >= m.links) total += m.size;
  return total;
}

/** The emitted name of a node: whiteouts become `.wh.NAME`. */
function emittedName(n: FsNode): string {
  return n.kind === 'whiteout' ? `${WHITEOUT_PREFIX}${n.name}` : n.name;
}

type Planned = { header: TarHeader; source?: Buffer; spliced?: SplicedEntry };

/** Every tar entry, in order, with where a file's bytes come from. */
function plan(root: FsNode, upper: string, sourceDateEpoch: number | undefined, splice: TarSplice | undefined): Planned[] {
  const out: Planned[] = [];
  const firstLink = new Map<number, string>();
  const mtimeOf = (n: FsNode): number => {
    const s = Math.floor(n.st.mtimeMs / 1000);
    return sourceDateEpoch !== undefined && s > sourceDateEpoch ? sourceDateEpoch : s;
  };
  const base = (n: FsNode, name: string): TarHeader => ({
    name,
    type: 'file',
    mode: n.st.mode & 0o7777,
    uid: n.st.uid,
    gid: n.st.gid,
    size: 0,
    mtime: mtimeOf(n),
    linkname: '',
    devmajor: 0,
    devminor: 0,
    xattrs: n.xattrs,
  });
  const visit = (dir: FsNode): void => {
    type Item = { name: string; node?: FsNode };
    const items: Item[] = dir.children.map((c) => ({ name: emittedName(c), node: c }));
    if (dir.opaque) items.push({ name: OPAQUE_MARKER });
    items.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const prefix = dir.path === '' ? '' : `${dir.path}/`;
    for (const item of items) {
      const name = prefix + item.name;
      const n = item.node;
      if (!n) {
        // the opaque marker: an empty file, like a whiteout
        out.push({ header: { ...base(dir, name), mode: 0, uid: 0, gid: 0, xattrs: new Map() } });
        continue;
      }
      switch (n.kind) {
        case 'socket':
          continue; // sockets cannot be archived; runtimes leave them behind
        case 'whiteout':
          out.push({ header: { ...base(n, name), mode: 0, uid: 0, gid: 0, xattrs: new Map() } });
          continue;
        case 'dir':
          out.push({ header: { ...base(n, name), type: 'dir' } });
          visit(n);
          continue;
        default:
          break;
      }
      if (n.st.nlink > 1) {
        // overlay hard-links all whiteouts together; those were handled above
        const first = firstLink.get(n.st.ino);
        if (first !== undefined) {
          out.push({ header: { ...base(n, name), type: 'link', linkname: first } });
          continue;
        }
        firstLink.set(n.st.ino, name);
      }
      const h = base(n, name);
      switch (n.kind) {
        case 'file':
          out.push({ header: { ...h, size: n.st.size }, source: hostPath(upper, n.path), spliced: splice?.candidate(n) });
          break;
        case 'symlink':
          out.push({ header: { ...h, type: 'symlink', linkname: n.linkname, xattrs: new Map() } });
          break;
        case 'fifo':
          out.push({ header: { ...h, type: 'fifo' } });
          break;
        case 'char':
        case 'block': {
          // glibc's major()/minor() for the common 32-bit dev_t range
          const rdev = n.st.rdev;
          const major = (rdev >>> 8) & 0xfff;
          const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
          out.push({ header: { ...h, type: n.kind, devmajor: major, devminor: minor } });
          break;
        }
      }
    }
  };
  visit(root);
  return out;
}

const CHUNK = 1 << 20;

function changed(name: string): StrataError {
  return new StrataError('FILE_CHANGED', `${JSON.stringify(name)} changed size while its layer was being written`, {
    hint: 'Something still writes into the step’s filesystem; make sure the step has finished.',
  });
}

const READ_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW;
const readAt = promisify(read);

/**
 * Reads exactly `size` bytes of a file into `buf` at `offset`, synchronously (small files). It asks
 * for one byte more than expected so that a single read also shows the file did not grow; `buf`
 * must have room for it (the byte lands where padding or the next header goes).
 */
function readSmall(path: Buffer, size: number, buf: Buffer, offset: number, name: string): void {
  const fd = openNoAtime(path, READ_FLAGS);
  try {
    let done = 0;
    for (;;) {
      const n = readSync(fd, buf, offset + done, size + 1 - done, done);
      if (n === 0) break;
      done += n;
      if (done > size) throw changed(name);
    }
    if (done !== size) throw changed(name);
  } finally {
    closeSync(fd);
  }
}

async function* readLarge(path: Buffer, size: number, name: string): AsyncGenerator<Buffer> {
  const fd = openNoAtime(path, READ_FLAGS);
  try {
    let offset = 0;
    while (offset < size) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - offset));
      const { bytesRead } = await readAt(fd, buf, 0, buf.length, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
    if (offset !== size || (await readAt(fd, Buffer.alloc(1), 0, 1, size)).bytesRead !== 0) throw changed(name);
  } finally {
    closeSync(fd);
  }
}

/**
 * The tar bytes in ~1 MiB chunks. Headers and small files are packed into one buffer with
 * synchronous reads (a few microseconds each, against tens for a promise round trip); the
 * event loop runs whenever a chunk is handed on. Large files stream asynchronously.
 */
async function* tarStream(entries: Planned[], splice?: TarSplice): AsyncGenerator<Buffer> {
  let buf = Buffer.allocUnsafe(CHUNK);
  let used = 0;
  for (const { header, source, spliced } of entries) {
    const body = source ? header.size + padding(header.size) : 0;
    // room for a plain header, the body of a small file and readSmall's extra byte
    if (used + BLOCK + (body <= CHUNK / 2 ? body + 1 : 0) > buf.length) {
      if (used > 0) yield buf.subarray(0, used);
      buf = Buffer.allocUnsafe(CHUNK);
      used = 0;
    }
    let headStart = used;
    const written = writeHeader(header, buf, used);
    if (written > 0) used += written;
    else {
      const head = encodeHeader(header);
      if (used + head.length + (body <= CHUNK / 2 ? body + 1 : 0) > buf.length) {
        if (used > 0) yield buf.subarray(0, used);
        buf = Buffer.allocUnsafe(Math.max(CHUNK, head.length));
        used = 0;
      }
      headStart = used;
      head.copy(buf, used);
      used += head.length;
    }
    if (!source || header.size === 0) continue;
    if (body < buf.length - used) {
      const fromOlderTar = spliced !== undefined && splice !== undefined && splice.fill(spliced, buf.subarray(headStart, used), buf, used);
      if (!fromOlderTar) readSmall(source, header.size, buf, used, header.name);
      used += header.size;
      buf.fill(0, used, used + padding(header.size));
      used += padding(header.size);
      continue;
    }
    yield buf.subarray(0, used);
    buf = Buffer.allocUnsafe(CHUNK);
    used = 0;
    yield* readLarge(source, header.size, header.name);
    const pad = padding(header.size);
    if (pad) yield Buffer.alloc(pad);
  }
  if (used > 0) yield buf.subarray(0, used);
  yield END_OF_ARCHIVE;
}

interface BlobInfo {
  digest: string;
  size: number;
  mediaType: string;
}

/** Compresses tar bytes into `out` (through out + '.tmp'), hashing what is written. */
async function writeBlob(tarBytes: AsyncIterable<Buffer>, opts: { out: string; compression: LayerCompression; level?: number }): Promise<BlobInfo> {
  let compressed: AsyncIterable<Buffer>;
  switch (opts.compression) {
    case 'gzip':
      // 1 MiB gzip members deflated in parallel, as compressLayer writes them (src/snapshot/compress.ts)
      compressed = gzipMembers(tarBytes, opts.level ?? 6);
      break;
    case 'zstd':
      // zstd's multi-threaded output does not depend on the thread count, so -T0 stays deterministic
      compressed = throughProcess(tarBytes, 'zstd', [`-${opts.level ?? 3}`, '-T0', '-c', '-q']);
      break;
    case 'none':
      compressed = tarBytes;
      break;
  }
  const blobHash = sha256();
  const blobCount = { bytes: 0 };
  const tmp = `${opts.out}.tmp`;
  try {
    await pipeline(Readable.from(hashing(compressed, blobHash, blobCount)), createWriteStream(tmp));
    await rename(tmp, opts.out);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return { digest: `sha256:${blobHash.digest('hex')}`, size: blobCount.bytes, mediaType: MEDIA_TYPES[opts.compression] };
}

/** Moved to compress.ts (fast paths per compressor); re-exported for existing importers. */
export { compressLayer } from './compress.js';

export async function diffToLayer(upper: string, opts: DiffOptions): Promise<DiffResult> {
  if (opts.sourceDateEpoch !== undefined && !(Number.isInteger(opts.sourceDateEpoch) && opts.sourceDateEpoch >= 0)) {
    throw new StrataError('BAD_SOURCE_DATE_EPOCH', `SOURCE_DATE_EPOCH must be a whole number of seconds, got ${opts.sourceDateEpoch}`);
  }
  const root = await walkTree(upper);
  const dropped = dropStubs(root, opts.lowers, [...ALWAYS_STUBS, ...(opts.dropEmptyMountpoints ?? [])]);
  const splice = opts.splice && TarSplice.open(opts.splice);
  let diffId: string;
  let blob: BlobInfo;
  let entries: Planned[] = [];
  try {
    entries = plan(root, upper, opts.sourceDateEpoch, splice);
    if (opts.compression === 'none') {
      // the blob is the tar: one hash gives both digests
      blob = await writeBlob(tarStream(entries, splice), opts);
      diffId = blob.digest;
    } else {
      const diffHash = sha256();
      blob = await writeBlob(hashing(tarStream(entries, splice), diffHash, { bytes: 0 }), opts);
      diffId = `sha256:${diffHash.digest('hex')}`;
    }
  } finally {
    splice?.close();
  }
  const droppedPaths = dropped.map((p) => `/${Buffer.from(p, 'latin1').toString('utf8')}`);
  if (opts.pruneUpper) {
    // deepest first: dropStubs records children before their parents
    for (const p of dropped) await rmdir(hostPath(upper, p));
  }
  return {
    diffId,
    ...blob,
    empty: entries.length === 0,
    dropped: droppedPaths,
    spliced: splice?.counts.spliced ?? 0,
    diskSize: diskSizeOf(root),
  };
}
