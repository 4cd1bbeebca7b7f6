// Byte-stream plumbing shared by extraction and diffing: compression detection, running a
// filter program (zstd, tar) over a stream, hashing on the way through.
import { spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { Readable, pipeline } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import zlib from 'node:zlib';

export type Compression = 'gzip' | 'zstd' | 'none';

export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

export function toBuffer(chunk: Buffer | string | Uint8Array): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'latin1');
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** Errors a writer gets because its reader went away first; the reader's own failure explains more. */
function isBrokenPipe(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED';
}

export class ProcessError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${exitCode ?? 'by signal'})${stderr ? `: ${stderr}` : ''}`);
  }
}

/** Feeds `src` through `cmd args` (stdin to stdout) and yields what it writes. */
export async function* throughProcess(src: AsyncIterable<Buffer>, cmd: string, args: string[]): AsyncGenerator<Buffer> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  exited.catch(() => undefined);
  const feeding = pipelineAsync(Readable.from(src), child.stdin).then(
    () => undefined,
    (e: unknown) => e ?? new Error('input failed'),
  );
  let finished = false;
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    const feedErr = await feeding;
    if (feedErr && !isBrokenPipe(feedErr)) throw feedErr;
    const code = await exited;
    if (code !== 0) throw new ProcessError(cmd, code, stderr.trim());
    if (feedErr) throw feedErr;
    finished = true;
  } finally {
    if (!finished && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited.catch(() => undefined);
    }
  }
}

export function throughTransform(src: AsyncIterable<Buffer>, transform: NodeJS.ReadWriteStream): AsyncIterable<Buffer> {
  // pipeline destroys the transform with the source's error, so iteration below rethrows it
  return pipeline(Readable.from(src), transform, () => undefined) as unknown as AsyncIterable<Buffer>;
}

/** The bytes of a possibly gzip- or zstd-compressed stream, decompressed. */
export async function* decompressed(input: AsyncIterable<Buffer | string | Uint8Array>): AsyncGenerator<Buffer> {
  const it = input[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headLength = 0;
  let done = false;
  while (headLength < 4) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    const b = toBuffer(r.value);
    head.push(b);
    headLength += b.length;
  }
  const first = Buffer.concat(head);
  const rest = async function* (): AsyncGenerator<Buffer> {
    if (first.length > 0) yield first;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield toBuffer(r.value);
    }
  };
  switch (detectCompression(first)) {
    case 'gzip':
      yield* throughTransform(rest(), zlib.createGunzip());
      return;
    case 'zstd':
      yield* throughProcess(rest(), 'zstd', ['-d', '-c', '-q']);
      return;
    case 'none':
      yield* rest();
  }
}

/** Passes chunks through unchanged while hashing and counting them. */
export async function* hashing(src: AsyncIterable<Buffer>, hash: Hash, counter: { bytes: number }): AsyncGenerator<Buffer> {
  for await (const chunk of src) {
    hash.update(chunk);
    counter.bytes += chunk.length;
    yield chunk;
  }
}

export function sha256(): Hash {
  return createHash('sha256');
}

/**
 * Joins small chunks into ~`size`-byte ones. Tar output is mostly 512-byte headers and small
 * files; one write (and one hash update) per piece costs far more than the copy.
 */
export async function* coalesce(src: AsyncIterable<Buffer>, size = 1 << 20): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  for await (const chunk of src) {
    if (length === 0 && chunk.length >= size) {
      yield chunk;
      continue;
    }
    parts.push(chunk);
    length += chunk.length;
    if (length >= size) {
      yield Buffer.concat(parts, length);
      parts = [];
      length = 0;
    }
  }
  if (length > 0) yield Buffer.concat(parts, length);
}
