// Worker thread for byte-stream work that would otherwise hold the main thread (stream-workers.ts
// hands it out): inflating a segment of independent gzip members, and sha256 of whole streams.
// Everything arrives and leaves in SharedArrayBuffers (no copies); a segment's output is one
// buffer holding its members' bytes in order.
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import zlib from 'node:zlib';

export type StreamWorkerRequest =
  /** Inflate the members that fill `data[offset, offset+length)`, from its first byte on. */
  | { t: 'inflate'; id: number; data: SharedArrayBuffer; offset: number; length: number; final: boolean }
  /** Add bytes to hash stream `id` (opened by its first message); `end` asks for the digest. */
  | { t: 'hash'; id: number; data?: SharedArrayBuffer | Uint8Array; offset?: number; length?: number; end?: boolean };

export type StreamWorkerReply =
  /**
   * `consumed`: bytes of whole members decoded (each checked against its CRC-32 and length);
   * `complete`: they fill the segment (the final one may end in zero padding). Otherwise
   * `why` says what stopped the decoding at `consumed` (a member running past the end, bad bytes).
   */
  | { t: 'inflated'; id: number; out: SharedArrayBuffer; length: number; consumed: number; complete: boolean; why?: string }
  | { t: 'hashed'; id: number; bytes: number; digest?: string }
  | { t: 'failed'; id: number; message: string };

const FTEXT_RESERVED = 0xe0;
const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;

/** Where a gzip member's deflate data starts, or a reason it cannot be read from `at`. */
function memberBody(buf: Buffer, at: number): number | string {
  if (buf.length - at < 18) return 'a member header runs past the segment';
  if (buf[at] !== 0x1f || buf[at + 1] !== 0x8b || buf[at + 2] !== 8) return 'no gzip member header';
  const flg = buf[at + 3]!;
  if (flg & FTEXT_RESERVED) return 'reserved gzip flags set';
  let p = at + 10;
  if (flg & FEXTRA) {
    if (p + 2 > buf.length) return 'a member header runs past the segment';
    p += 2 + buf.readUInt16LE(p);
  }
  for (const f of [FNAME, FCOMMENT]) {
    if (!(flg & f)) continue;
    const z = buf.indexOf(0, p);
    if (z === -1) return 'a member header runs past the segment';
    p = z + 1;
  }
  if (flg & FHCRC) {
    if (p + 2 > buf.length) return 'a member header runs past the segment';
    if (buf.readUInt16LE(p) !== (zlib.crc32(buf.subarray(at, p)) & 0xffff)) return 'a member header does not match its CRC';
    p += 2;
  }
  return p;
}

function inflateSegment(seg: Buffer, final: boolean): { parts: Buffer[]; consumed: number; complete: boolean; why?: string } {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < seg.length) {
    // After the last member, a zero byte ends the stream (padding), as in Node's gunzip stream.
    if (final && at > 0 && seg[at] === 0) return { parts, consumed: seg.length, complete: true };
    const body = memberBody(seg, at);
    if (typeof body === 'string') return { parts, consumed: at, complete: false, why: body };
    let out: Buffer;
    let used: number;
    try {
      const r = zlib.inflateRawSync(seg.subarray(body), { info: true, chunkSize: (1 << 20) + (64 << 10) }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      out = r.buffer;
      used = r.engine.bytesWritten;
    } catch (e) {
      return { parts, consumed: at, complete: false, why: e instanceof Error ? e.message : String(e) };
    }
    const trailer = body + used;
    if (trailer + 8 > seg.length) return { parts, consumed: at, complete: false, why: 'a member trailer runs past the segment' };
    if (seg.readUInt32LE(trailer) !== zlib.crc32(out) || seg.readUInt32LE(trailer + 4) !== out.length % 2 ** 32) {
      return { parts, consumed: at, complete: false, why: 'a member does not match its CRC-32 or length' };
    }
    parts.push(out);
    at = trailer + 8;
  }
  return { parts, consumed: at, complete: true };
}

const hashes = new Map<number, { hash: Hash; bytes: number }>();

function handle(m: StreamWorkerRequest): StreamWorkerReply {
  if (m.t === 'inflate') {
    const r = inflateSegment(Buffer.from(m.data, m.offset, m.length), m.final);
    const length = r.parts.reduce((n, p) => n + p.length, 0);
    const out = new SharedArrayBuffer(length);
    const view = Buffer.from(out);
    let o = 0;
    for (const p of r.parts) o += p.copy(view, o);
    return { t: 'inflated', id: m.id, out, length, consumed: r.consumed, complete: r.complete, why: r.why };
  }
  let h = hashes.get(m.id);
  if (!h) hashes.set(m.id, (h = { hash: createHash('sha256'), bytes: 0 }));
  if (m.data) {
    const b = m.data instanceof SharedArrayBuffer ? Buffer.from(m.data, m.offset ?? 0, m.length ?? m.data.byteLength) : Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
    h.hash.update(b);
    h.bytes += b.length;
  }
  if (!m.end) return { t: 'hashed', id: m.id, bytes: h.bytes };
  hashes.delete(m.id);
  return { t: 'hashed', id: m.id, bytes: h.bytes, digest: h.hash.digest('hex') };
}

parentPort?.on('message', (m: StreamWorkerRequest) => {
  let reply: StreamWorkerReply;
  try {
    reply = handle(m);
  } catch (e) {
    reply = { t: 'failed', id: m.id, message: e instanceof Error ? e.message : String(e) };
  }
  parentPort!.postMessage(reply);
});
