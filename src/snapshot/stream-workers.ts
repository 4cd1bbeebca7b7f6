// Worker threads for the CPU work of reading a layer (stream-worker.ts): sha256 of the compressed
// and the uncompressed bytes, and inflating independent gzip members several at once
// (parallel-inflate.ts). On the main thread those hashes take about 0.65 s of a 774 MB layer
// while the event loop also parses the tar, writes the image and serves the other layers, and
// zlib inflates one gzip stream on one thread (1.3 s).
//
// Only with 3 cores or more: on 2, the main thread and zlib's thread already keep both busy, and
// handing bytes between threads costs CPU of its own (shared-memory copies, page faults, a CRC-32
// pass of their own: about 0.5 s more CPU for that layer), so a loaded 2-core machine came out
// no faster (seed004 job B, 2026-11-23). STRATA_STREAM_WORKERS=N sets the count (0: none).
// One worker per core (at most 4); they start on first use and do not keep the process alive
// while idle. Without worker threads (a restricted runtime) everything runs inline.
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { StreamWorkerReply, StreamWorkerRequest } from './stream-worker.js';

const MAX_WORKERS = 4;
/** Streams shorter than this are hashed inline: a worker round trip costs more. */
const INLINE_HASH_BYTES = 1 << 20;
/** Bytes handed to a hash worker and not yet hashed, above which update() waits. */
const HASH_BACKLOG = 16 << 20;

type Reply<T extends StreamWorkerReply['t']> = Extract<StreamWorkerReply, { t: T }>;

class StreamWorker {
  private readonly worker: Worker;
  /** Replies come in request order (one message queue, handled one at a time). */
  private readonly waiting: Array<{ resolve: (r: StreamWorkerReply) => void; reject: (e: Error) => void }> = [];
  dead = false;

  constructor() {
    this.worker = new Worker(new URL('./stream-worker.js', import.meta.url));
    this.worker.on('message', (r: StreamWorkerReply) => {
      const w = this.waiting.shift();
      if (this.waiting.length === 0) this.worker.unref();
      if (!w) return;
      if (r.t === 'failed') w.reject(new Error(r.message));
      else w.resolve(r);
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`stream worker stopped (exit code ${code})`)));
    this.worker.unref();
  }

  get load(): number {
    return this.waiting.length;
  }

  private fail(e: Error): void {
    this.dead = true;
    const i = pool.indexOf(this);
    if (i !== -1) pool.splice(i, 1);
    for (const w of this.waiting.splice(0)) w.reject(e);
  }

  request<T extends StreamWorkerReply['t']>(m: StreamWorkerRequest): Promise<Reply<T>> {
    if (this.dead) return Promise.reject(new Error('stream worker stopped'));
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve: resolve as (r: StreamWorkerReply) => void, reject });
      this.worker.ref();
      this.worker.postMessage(m);
    });
  }
}

const pool: StreamWorker[] = [];
let unavailable = false;
let nextId = 0;
let nextPick = 0;

/** How many workers the pool has when full (0: none, everything inline). */
export function streamWorkerCount(): number {
  if (unavailable) return 0;
  const asked = process.env.STRATA_STREAM_WORKERS;
  if (asked !== undefined && asked !== '' && Number.isInteger(Number(asked))) return Math.max(0, Math.min(Number(asked), MAX_WORKERS));
  const cores = availableParallelism();
  return cores >= 3 ? Math.min(cores, MAX_WORKERS) : 0;
}

function fill(): StreamWorker[] {
  while (!unavailable && pool.length < streamWorkerCount()) {
    try {
      pool.push(new StreamWorker());
    } catch {
      unavailable = true;
    }
  }
  return pool;
}

/** The least busy worker, or undefined when there are none. */
function pick(): StreamWorker | undefined {
  const all = fill();
  if (all.length === 0) return undefined;
  let best = all[nextPick++ % all.length]!;
  for (const w of all) if (w.load < best.load) best = w;
  return best;
}

/** `b`'s bytes in shared memory: itself when it already is, else a copy. */
export function shared(b: Buffer): { data: SharedArrayBuffer; offset: number; length: number } {
  if (b.buffer instanceof SharedArrayBuffer) return { data: b.buffer, offset: b.byteOffset, length: b.length };
  const data = new SharedArrayBuffer(b.length);
  b.copy(Buffer.from(data));
  return { data, offset: 0, length: b.length };
}

/**
 * A sha256 computed on a worker thread. The caller must not change a chunk's bytes after
 * update() (chunks in shared memory are hashed in place). update() returns a promise while the
 * worker is far behind; digest() gives `sha256:<hex>`.
 */
export class StreamDigest {
  private readonly id = ++nextId;
  private worker: StreamWorker | undefined;
  private early: Buffer[] = [];
  private earlyBytes = 0;
  private inline = false;
  private readonly inFlight: Array<{ done: Promise<unknown>; bytes: number }> = [];
  private backlog = 0;
  private failed: Error | undefined;
  private readonly hash = createHash('sha256');
  bytes = 0;

  update(chunk: Buffer): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    this.bytes += chunk.length;
    if (this.inline) return this.inlineUpdate(chunk);
    if (!this.worker) {
      // Kept until the stream proves long enough for a worker: a copy, as the caller may reuse memory.
      this.early.push(Buffer.from(chunk));
      this.earlyBytes += chunk.length;
      if (this.earlyBytes < INLINE_HASH_BYTES) return undefined;
      this.worker = pick();
      if (!this.worker) {
        this.inline = true;
        const early = this.early;
        this.early = [];
        for (const b of early) this.inlineUpdate(b);
        return undefined;
      }
      const early = this.early;
      this.early = [];
      for (const b of early) this.send(b);
    } else this.send(chunk);
    return this.backlog > HASH_BACKLOG ? this.drain(HASH_BACKLOG / 2) : undefined;
  }

  private inlineUpdate(chunk: Buffer): undefined {
    this.hash.update(chunk);
    return undefined;
  }

  private send(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const done = this.worker!.request<'hashed'>({ t: 'hash', id: this.id, ...shared(chunk) });
    done.catch((e: unknown) => (this.failed ??= e instanceof Error ? e : new Error(String(e))));
    this.inFlight.push({ done, bytes: chunk.length });
    this.backlog += chunk.length;
  }

  private async drain(to: number): Promise<void> {
    while (this.backlog > to && this.inFlight.length > 0) {
      const f = this.inFlight.shift()!;
      await f.done.catch(() => undefined);
      this.backlog -= f.bytes;
    }
    if (this.failed) throw this.failed;
  }

  async digest(): Promise<string> {
    if (!this.worker) {
      for (const b of this.early) this.hash.update(b);
      this.early = [];
      return `sha256:${this.hash.digest('hex')}`;
    }
    const r = await this.worker.request<'hashed'>({ t: 'hash', id: this.id, end: true });
    await this.drain(0);
    if (r.bytes !== this.bytes) throw new Error(`the hash worker saw ${r.bytes} bytes, not ${this.bytes}`);
    return `sha256:${r.digest!}`;
  }
}

/** Inflates one segment of gzip members on a worker; undefined when there is no worker. */
export function inflateOnWorker(seg: Buffer, final: boolean): Promise<Reply<'inflated'>> | undefined {
  const w = pick();
  if (!w) return undefined;
  return w.request<'inflated'>({ t: 'inflate', id: ++nextId, ...shared(seg), final });
}
