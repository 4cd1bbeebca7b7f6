// Inflating many-member gzip blobs on the stream workers (src/snapshot/parallel-inflate.ts,
// stream-worker.ts) and hashing off the main thread (stream-workers.ts): the bytes are exactly
// zlib's, damage is refused as zlib refuses it, a header-like byte run inside a member does not
// cut the stream there, and one-member blobs take zlib's stream as before.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { decompressed } from '../../src/snapshot/streams.js';
import { inflateStats } from '../../src/snapshot/parallel-inflate.js';
import { StreamDigest, streamWorkerCount } from '../../src/snapshot/stream-workers.js';
import { gzipMembers } from '../../src/snapshot/compress.js';

const MiB = 1 << 20;
// Workers are used by default only with 3 cores or more; these tests want them on any machine.
process.env.STRATA_STREAM_WORKERS = '2';

/** Half random (stored members, about 1 MiB compressed), half text (about 200 KiB compressed). */
function layerLike(mib: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < mib; i++) {
    parts.push(i % 2 === 0 ? randomBytes(MiB) : Buffer.from(`line ${i} of a text file with some words in it\n`.repeat(Math.ceil(MiB / 45))).subarray(0, MiB));
  }
  return Buffer.concat(parts);
}

async function members(data: Buffer): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const m of gzipMembers((async function* () { yield data; })())) out.push(m);
  return Buffer.concat(out);
}

/** `buf` in pieces of `size` bytes, as a file or a socket hands it over. */
async function* pieces(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, Math.min(buf.length, i + size));
}

async function inflate(gz: Buffer, size = MiB): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of decompressed(pieces(gz, size))) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

const parallel = streamWorkerCount() >= 2 ? false : 'no worker threads here';

test('a many-member blob inflates on the workers to exactly the bytes zlib gives, whatever the read size', { skip: parallel }, async () => {
  const data = layerLike(24);
  const gz = await members(data);
  assert.deepEqual(zlib.gunzipSync(gz), data);
  for (const size of [MiB, 7000, 3 * MiB + 5]) {
    const before = inflateStats.segments;
    const out = await inflate(gz, size);
    assert.equal(out.length, data.length, `read size ${size}`);
    assert.ok(out.equals(data), `read size ${size}`);
    assert.ok(inflateStats.segments - before >= 3, `read size ${size}: inflated in segments on the workers (${inflateStats.segments - before})`);
  }
});

test('a damaged member is refused (its CRC-32, or its deflate data), as zlib refuses it', { skip: parallel }, async () => {
  const data = layerLike(16);
  const gz = await members(data);
  // The 9th member's start: where zlib's own reading of the members puts it.
  let at = 0;
  for (let i = 0; i < 9; i++) at += 18 + (zlib.inflateRawSync(gz.subarray(at + 10), { info: true }) as unknown as { engine: { bytesWritten: number } }).engine.bytesWritten;
  const body = at + 10;
  const trailerOf = (start: number) => start + 10 + (zlib.inflateRawSync(gz.subarray(start + 10), { info: true }) as unknown as { engine: { bytesWritten: number } }).engine.bytesWritten;
  for (const [what, damage] of [
    ['a flipped CRC-32', (b: Buffer) => (b[trailerOf(at)] ^= 0xff)],
    ['a flipped length', (b: Buffer) => (b[trailerOf(at) + 4] ^= 0x01)],
    ['flipped deflate data', (b: Buffer) => (b[body + 50_000] ^= 0xff)],
    ['a cut in the middle', undefined],
  ] as const) {
    const bad = Buffer.from(damage ? gz : gz.subarray(0, body + 70_000));
    if (damage) damage(bad);
    assert.throws(() => zlib.gunzipSync(bad), Error, `zlib refuses ${what}`);
    await assert.rejects(inflate(bad), Error, what);
  }
});

test('bytes that look like a member header inside a member do not cut the stream there', { skip: parallel }, async () => {
  // Stored members (random data) carry their bytes as they are: plant a gzip header near the end
  // of every member, so the first header-like bytes past a segment's minimum size are planted.
  const data = randomBytes(12 * MiB);
  const header = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03]);
  for (let end = MiB; end <= data.length; end += MiB) header.copy(data, end - 150);
  const gz = await members(data);
  const before = { ...inflateStats };
  const out = await inflate(gz);
  assert.ok(out.equals(data));
  assert.ok(inflateStats.restarts > before.restarts, 'a cut at a planted header was proven wrong and the stream cut again');
});

test('a one-member blob goes through zlib\'s stream; zero padding after the last member is accepted as by zlib', async () => {
  const data = layerLike(14);
  const one = zlib.gzipSync(data);
  const before = inflateStats.sequential;
  assert.ok((await inflate(one)).equals(data));
  if (!parallel) assert.equal(inflateStats.sequential, before + 1);
  const padded = Buffer.concat([await members(data), Buffer.alloc(1000)]);
  assert.ok(zlib.gunzipSync(padded).equals(data));
  assert.ok((await inflate(padded)).equals(data));
});

test('StreamDigest gives sha256 of every byte, from plain and shared memory, in any chunking, several streams at once', async () => {
  const big = randomBytes(40 * MiB + 123);
  const small = randomBytes(1000);
  const expect = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const run = async (b: Buffer, size: number, sharedMemory: boolean) => {
    const d = new StreamDigest();
    for await (const c of pieces(b, size)) {
      let chunk = c;
      if (sharedMemory) {
        chunk = Buffer.from(new SharedArrayBuffer(c.length));
        c.copy(chunk);
      }
      const wait = d.update(chunk);
      if (wait) await wait;
    }
    assert.equal(d.bytes, b.length);
    return d.digest();
  };
  const results = await Promise.all([run(big, MiB, false), run(big, 65_536, true), run(big, 5 * MiB + 1, false), run(small, 100, false), run(Buffer.alloc(0), 1, false)]);
  assert.deepEqual(results, [expect(big), expect(big), expect(big), expect(small), expect(Buffer.alloc(0))]);
});
