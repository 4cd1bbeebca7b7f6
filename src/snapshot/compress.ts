// Compressing a committed (uncompressed) layer tar into a gzip or zstd blob for an export or a push.
//
// gzip: Node's zlib deflates one stream on one thread (~35 MB/s at -6), so the tar is cut at fixed
// 1 MiB offsets and every piece becomes its own gzip member, several compressed at once on libuv's
// thread pool. Concatenated members are one valid gzip file (RFC 1952 §2.2; Go's, zlib's and GNU
// gzip's readers all read on). A piece whose sampled bytes look random (already compressed
// files, encrypted data) is stored (level 0): deflate would spend 30 ms per MiB to save nothing.
// The bytes depend only on the input and the level, never on the chunking or the thread count.
//
// zstd: the zstd binary reads the tar from its file descriptor (-T0: its output does not depend on
// the thread count); Node hashes and writes its output as it comes.
import { spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { copyFile, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import zlib from 'node:zlib';
import type { LayerCompression } from './diff.js';

/** Uncompressed bytes per gzip member: 0.15 % larger than one stream on real layers. */
export const GZIP_MEMBER_BYTES = 1 << 20;

const LAYER_MEDIA_TYPES: Record<LayerCompression, string> = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  none: 'application/vnd.oci.image.layer.v1.tar',
};

/** Order-0 entropy above this (bits per byte) over the sample: deflate gains nothing worth its time. */
const STORE_ENTROPY = 7.98;
const SAMPLE_WINDOWS = 16;
const SAMPLE_WINDOW_BYTES = 4096;

function entropyBits(counts: Uint32Array, total: number): number {
  let e = 0;
  for (let i = 0; i < 256; i++) {
    const c = counts[i]!;
    if (c === 0) continue;
    const p = c / total;
    e -= p * Math.log2(p);
  }
  return e;
}

/** Whether a piece looks incompressible, judged from 16 windows of 4 KiB spread over it. */
export function looksIncompressible(piece: Buffer): boolean {
  if (piece.length < SAMPLE_WINDOWS * SAMPLE_WINDOW_BYTES * 2) return false;
  const counts = new Uint32Array(256);
  const stride = Math.floor(piece.length / SAMPLE_WINDOWS);
  for (let w = 0; w < SAMPLE_WINDOWS; w++) {
    const start = w * stride;
    for (let i = start, end = start + SAMPLE_WINDOW_BYTES; i < end; i++) counts[piece[i]!]!++;
  }
  return entropyBits(counts, SAMPLE_WINDOWS * SAMPLE_WINDOW_BYTES) > STORE_ENTROPY;
}

/** How many members are deflated at once: every core, leaving a pool thread for file I/O. */
function gzipParallelism(): number {
  return Math.max(2, Math.min(availableParallelism(), 3));
}

/**
 * Deflate jobs in flight across the process: several layers compressed at once (an image push
 * compresses its whole chain) must not take every thread of libuv's pool, which file reads and
 * writes need too.
 */
const deflateSlots = { free: gzipParallelism(), waiting: [] as (() => void)[] };

async function withDeflateSlot<T>(fn: () => Promise<T>): Promise<T> {
  if (deflateSlots.free > 0) deflateSlots.free--;
  else await new Promise<void>((resolve) => deflateSlots.waiting.push(resolve));
  try {
    return await fn();
  } finally {
    const next = deflateSlots.waiting.shift();
    if (next) next();
    else deflateSlots.free++;
  }
}

function gzipMember(piece: Buffer, level: number): Promise<Buffer> {
  const lvl = level > 0 && looksIncompressible(piece) ? 0 : level;
  // One output buffer for the whole member: zlib's default 16 KiB chunks cost more than a stored member itself.
  const chunkSize = piece.length + (piece.length >> 4) + 1024;
  return withDeflateSlot(() => new Promise((resolve, reject) => zlib.gzip(piece, { level: lvl, chunkSize: Math.max(chunkSize, 64) }, (e, out) => (e ? reject(e) : resolve(out)))));
}

/** Cuts a byte stream at exact multiples of `size` (the last piece may be shorter). */
async function* fixedPieces(src: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  for await (const chunk of src) {
    let c = chunk;
    while (c.length > 0) {
      const take = Math.min(size - length, c.length);
      if (length === 0 && take === size) {
        yield c.subarray(0, take);
      } else {
        parts.push(c.subarray(0, take));
        length += take;
        if (length === size) {
          yield Buffer.concat(parts, length);
          parts = [];
          length = 0;
        }
      }
      c = c.subarray(take);
    }
  }
  if (length > 0) yield Buffer.concat(parts, length);
}

/**
 * The gzip blob of a byte stream as a series of members (one per GZIP_MEMBER_BYTES of input),
 * several deflated at once, yielded in order. Empty input gives one empty member, as gzip does.
 */
export function gzipMembers(src: AsyncIterable<Buffer>, level = 6): AsyncGenerator<Buffer> {
  return members(src, level, true);
}

/** `copy`: the source may reuse a chunk's memory once asked for the next (compressLayer's never do). */
async function* members(src: AsyncIterable<Buffer>, level: number, copy: boolean): AsyncGenerator<Buffer> {
  const limit = gzipParallelism();
  const queue: Promise<Buffer>[] = [];
  let any = false;
  try {
    for await (const piece of fixedPieces(src, GZIP_MEMBER_BYTES)) {
      any = true;
      const p = gzipMember(copy ? Buffer.from(piece) : piece, level);
      p.catch(() => undefined);
      queue.push(p);
      if (queue.length >= limit) yield await queue.shift()!;
    }
    if (!any) queue.push(gzipMember(Buffer.alloc(0), level));
    while (queue.length > 0) yield await queue.shift()!;
  } finally {
    // On an early exit, let the members in flight finish on their threads without being read.
    for (const p of queue) p.catch(() => undefined);
  }
}

async function* readFileChunks(fh: FileHandle, hash: Hash | undefined, chunk = 4 << 20): AsyncGenerator<Buffer> {
  for (;;) {
    const buf = Buffer.allocUnsafe(chunk);
    const { bytesRead } = await fh.read(buf, 0, chunk, null);
    if (bytesRead === 0) return;
    const b = bytesRead === chunk ? buf : buf.subarray(0, bytesRead);
    hash?.update(b);
    yield b;
  }
}

/** Keeps the next `depth` items of `src` in flight while the consumer works on the current one. */
async function* readAhead<T>(src: AsyncIterable<T>, depth = 2): AsyncGenerator<T> {
  const it = src[Symbol.asyncIterator]();
  const queue: Promise<IteratorResult<T>>[] = [];
  try {
    for (;;) {
      while (queue.length < depth) {
        const p = it.next();
        p.catch(() => undefined);
        queue.push(p);
      }
      const r = await queue.shift()!;
      if (r.done) return;
      yield r.value;
    }
  } finally {
    await it.return?.();
  }
}

async function hashFile(path: string): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  const fh = await open(path, 'r');
  try {
    for await (const b of readFileChunks(fh, h)) size += b.length;
  } finally {
    await fh.close();
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** Writes chunks to `fh` in order, ~1 MiB at a time, without making the producer wait for each write. */
class QueuedWriter {
  private writing: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private parts: Buffer[] = [];
  private length = 0;
  constructor(private readonly fh: FileHandle) {}

  async add(chunk: Buffer): Promise<void> {
    this.parts.push(chunk);
    this.length += chunk.length;
    if (this.length >= 1 << 20) await this.flushParts();
  }

  private async flushParts(): Promise<void> {
    if (this.length === 0) return;
    const data = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
    this.parts = [];
    this.length = 0;
    this.queued++;
    this.writing = this.writing.then(() => this.fh.write(data)).finally(() => this.queued--);
    this.writing.catch(() => undefined);
    if (this.queued > 4) await this.writing;
  }

  async end(): Promise<void> {
    await this.flushParts();
    await this.writing;
  }
}

/**
 * zstd reads the tar straight from its descriptor (-T0 on every core); its output is hashed and
 * written here as it arrives, overlapping with the compression.
 */
async function zstdToFile(input: FileHandle, output: FileHandle, level: number): Promise<{ digest: string; size: number }> {
  const child = spawn('zstd', [`-${level}`, '-T0', '-c', '-q'], { stdio: [input.fd, 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`zstd failed (${code === null ? `signal ${signal}` : `exit ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`));
    });
  });
  exited.catch(() => undefined);
  const hash = createHash('sha256');
  let size = 0;
  const writer = new QueuedWriter(output);
  try {
    for await (const chunk of child.stdout!) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
      await writer.add(chunk as Buffer);
    }
    await writer.end();
    await exited;
  } catch (e) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited.catch(() => undefined);
    throw e;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

export interface CompressedLayer {
  diffId: string;
  digest: string;
  size: number;
  mediaType: string;
}

/**
 * Compresses an uncompressed layer tar (e.g. one diffToLayer wrote with compression 'none') into
 * the bytes diffToLayer writes with that compression. `diffId`, when the caller knows it (a store
 * layer), is trusted and not recomputed: hashing the tar again costs as much as zstd itself.
 */
export async function compressLayer(
  tarPath: string,
  opts: { out: string; compression: LayerCompression; level?: number; diffId?: string },
): Promise<CompressedLayer> {
  const tmp = `${opts.out}.tmp`;
  const mediaType = LAYER_MEDIA_TYPES[opts.compression];
  try {
    let diffId = opts.diffId;
    let blob: { digest: string; size: number };
    if (opts.compression === 'none') {
      await copyFile(tarPath, tmp);
      blob = await hashFile(tmp);
      diffId ??= blob.digest;
    } else if (opts.compression === 'zstd') {
      const input = await open(tarPath, 'r');
      try {
        const output = await open(tmp, 'w');
        try {
          // The tar is hashed (when needed) while zstd reads the same pages on its own threads.
          const [b, d] = await Promise.all([zstdToFile(input, output, opts.level ?? 3), diffId ? undefined : hashFile(tarPath)]);
          blob = b;
          diffId ??= d!.digest;
        } finally {
          await output.close();
        }
      } finally {
        await input.close();
      }
    } else {
      const diffHash = diffId ? undefined : createHash('sha256');
      const blobHash = createHash('sha256');
      let size = 0;
      const input = await open(tarPath, 'r');
      try {
        const output = await open(tmp, 'w');
        try {
          // Writes queue behind each other so deflating the next members never waits for the disk.
          const writer = new QueuedWriter(output);
          for await (const member of members(readAhead(readFileChunks(input, diffHash)), opts.level ?? 6, false)) {
            blobHash.update(member);
            size += member.length;
            await writer.add(member);
          }
          await writer.end();
        } finally {
          await output.close();
        }
      } finally {
        await input.close();
      }
      blob = { digest: `sha256:${blobHash.digest('hex')}`, size };
      diffId ??= `sha256:${diffHash!.digest('hex')}`;
    }
    await rename(tmp, opts.out);
    return { diffId, ...blob, mediaType };
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
