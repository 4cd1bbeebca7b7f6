// Inflating a gzip blob made of many independent members several members at once. strata's own
// gzip layers and cache exports are one member per MiB of tar (compress.ts); zlib's gunzip stream
// reads them one after another on a single thread (about 1.4 s for a 774 MB layer here), while
// the members could be inflated side by side on every core.
//
// Nothing in the blob says where members start, so the stream is cut at a likely member header
// (1f 8b 08, no reserved flags) about every 2 MiB, and the segments are inflated on the stream
// workers. A cut is trusted only once proven: segment 0 starts at the blob's first byte, and a
// worker decodes a segment member after member from its first byte (each member checked against
// its CRC-32 and length, as zlib does), so a segment whose members end exactly at its end proves
// the next segment's start. A cut inside a member (compressed bytes that happen to look like a
// header) leaves its segment unfinished: what was proven is kept, and the rest is cut again from
// the first byte not decoded. Where nothing is proven (a damaged blob, one big member), the rest
// goes through zlib's stream as before, so errors and odd endings (zero padding) are what they
// were. Whatever comes out is hashed against the layer's diffID by the caller in any case.
import { inflateOnWorker, streamWorkerCount } from './stream-workers.js';
import type { StreamWorkerReply } from './stream-worker.js';

/** Compressed bytes per segment, at least (about 9 MiB of tar at gzip -6). */
const MIN_SEGMENT = 2 << 20;
/** No member header this far into the blob: one stream (as most registries' layers are). */
const FIRST_CUT_WITHIN = 4 << 20;
/** No member header in this many bytes later on: the rest is read as one stream. */
const MAX_SEGMENT = 32 << 20;

type Inflated = Extract<StreamWorkerReply, { t: 'inflated' }>;

/** What parallelGunzip did in this process (for tests and debug lines). */
export const inflateStats = { segments: 0, restarts: 0, sequential: 0 };

interface Segment {
  buf: Buffer;
  final: boolean;
  result: Promise<Inflated>;
  settled: boolean;
}

/** The first offset at or after `from` that looks like a gzip member header; -1 if none yet. */
export function findMemberHeader(buf: Buffer, from: number): number {
  for (let i = buf.indexOf(0x1f, from); i !== -1; i = buf.indexOf(0x1f, i + 1)) {
    if (i + 10 > buf.length) return -1;
    if (buf[i + 1] === 0x8b && buf[i + 2] === 8 && (buf[i + 3]! & 0xe0) === 0) return i;
  }
  return -1;
}

function sharedConcat(parts: Buffer[], length: number): Buffer {
  const out = Buffer.from(new SharedArrayBuffer(length));
  let o = 0;
  for (const p of parts) o += p.copy(out, o);
  return out;
}

/**
 * The bytes of a gzip stream (`src` starts with its first member), inflated on the stream
 * workers where it is made of many members, else by `sequential` (zlib's gunzip stream).
 */
export async function* parallelGunzip(src: AsyncIterable<Buffer>, sequential: (src: AsyncIterable<Buffer>) => AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const workers = streamWorkerCount();
  if (workers < 2) {
    yield* sequential(src);
    return;
  }
  const limit = workers * 2;
  const it = src[Symbol.asyncIterator]();
  const inflight: Segment[] = [];
  let parts: Buffer[] = [];
  let partsLength = 0;
  let searched = MIN_SEGMENT;
  let tryAt = MIN_SEGMENT + (64 << 10);
  let cut = false;
  let inputDone = false;
  let giveUp = false;
  let next: Promise<IteratorResult<Buffer>> | undefined;
  /** `first`, then the input not read yet (a read already asked for included). */
  const rest = (first: Buffer[]): AsyncGenerator<Buffer> => {
    const asked = next;
    next = undefined;
    return (async function* () {
      for (const b of first) if (b.length > 0) yield b;
      if (asked) {
        const r = await asked;
        if (r.done) return;
        yield r.value;
      }
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    })();
  };

  const dispatch = (buf: Buffer, final: boolean): boolean => {
    const result = inflateOnWorker(buf, final);
    if (!result) return false;
    inflateStats.segments++;
    const seg: Segment = { buf, final, result, settled: false };
    result.then(
      () => (seg.settled = true),
      () => (seg.settled = true),
    );
    inflight.push(seg);
    return true;
  };
  const abandon = () => {
    for (const s of inflight) s.result.catch(() => undefined);
    inflight.length = 0;
  };

  try {
    for (;;) {
      const head = inflight[0];
      if (head && (head.settled || inflight.length >= limit || inputDone || giveUp)) {
        inflight.shift();
        let r: Inflated;
        try {
          r = await head.result;
        } catch {
          // The worker is gone: zlib's stream from this segment on (its start is proven).
          const leftover = [head.buf, ...inflight.map((s) => s.buf), ...parts];
          abandon();
          inflateStats.sequential++;
          yield* sequential(rest(leftover));
          return;
        }
        if (r.length > 0) yield Buffer.from(r.out, 0, r.length);
        if (r.complete) continue;
        // Decoded up to `consumed` (proven); cut again from there, or give the rest to zlib's
        // stream when this segment made no progress (a damaged member, or one bigger than a segment).
        const leftover = [head.buf.subarray(r.consumed), ...inflight.map((s) => s.buf), ...parts];
        abandon();
        if (r.consumed > 0 && !head.final) {
          inflateStats.restarts++;
          yield* parallelGunzip(rest(leftover), sequential);
        } else {
          inflateStats.sequential++;
          yield* sequential(rest(leftover));
        }
        return;
      }
      if (giveUp) {
        inflateStats.sequential++;
        yield* sequential(rest(parts));
        return;
      }
      if (inputDone) return;
      next ??= it.next();
      if (head) {
        // Hand on a finished segment while the input is slow to come.
        const first = await Promise.race([next.then(() => 'input' as const), head.result.then(() => 'head' as const, () => 'head' as const)]);
        if (first === 'head') continue;
      }
      const n = await next;
      next = undefined;
      if (n.done) {
        inputDone = true;
        if (partsLength > 0 && !dispatch(sharedConcat(parts, partsLength), true)) giveUp = true;
        else parts = [];
        continue;
      }
      parts.push(n.value);
      partsLength += n.value.length;
      if (partsLength < tryAt) continue;
      const pending = sharedConcat(parts, partsLength);
      const at = findMemberHeader(pending, searched);
      if (at !== -1 && dispatch(pending.subarray(0, at), false)) {
        cut = true;
        parts = [pending.subarray(at)];
        partsLength = pending.length - at;
        searched = MIN_SEGMENT;
        tryAt = MIN_SEGMENT + (64 << 10);
        continue;
      }
      parts = [pending];
      // A header may begin in the last bytes searched; the next search starts before them.
      searched = Math.max(MIN_SEGMENT, pending.length - 10);
      tryAt = pending.length + Math.max(1 << 20, pending.length >> 1);
      if (at !== -1 || partsLength >= (cut ? MAX_SEGMENT : FIRST_CUT_WITHIN)) giveUp = true;
    }
  } finally {
    abandon();
    if (next) next.catch(() => undefined);
  }
}
