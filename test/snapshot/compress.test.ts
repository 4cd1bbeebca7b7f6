// compressLayer and gzipMembers: parallel gzip members, stored pieces for random data, the zstd
// binary reading the tar itself. Every blob is checked by decompressing it with other tools.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { GZIP_MEMBER_BYTES, compressLayer, gzipMembers, looksIncompressible } from '../../src/snapshot/compress.js';

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** Offsets of the gzip members of a blob, found by walking it with zlib member by member. */
function gzipMemberCount(blob: Buffer): number {
  let n = 0;
  let rest = blob;
  while (rest.length > 0) {
    assert.equal(rest[0], 0x1f);
    assert.equal(rest[1], 0x8b);
    // inflateRaw past the 10-byte header (no optional fields are written) tells how much it used.
    const inflater = zlib.inflateRawSync(rest.subarray(10), { info: true }) as unknown as { engine: { bytesWritten: number } };
    rest = rest.subarray(10 + inflater.engine.bytesWritten + 8);
    n++;
  }
  return n;
}

/** 3.5 MiB: random (incompressible) pieces, text, and a tail shorter than a member. */
function mixedInput(): Buffer {
  const text = Buffer.from('layer bytes that compress well, line after line\n'.repeat(30_000)).subarray(0, GZIP_MEMBER_BYTES + 12345);
  return Buffer.concat([randomBytes(GZIP_MEMBER_BYTES), text, randomBytes(GZIP_MEMBER_BYTES + 777), Buffer.from('tail')]);
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const b of it) out.push(b);
  return Buffer.concat(out);
}

async function* chunked(b: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

test('gzipMembers: one member per MiB, readable by zlib and gzip(1), same bytes however the input is chunked', async () => {
  const input = mixedInput();
  const a = await collect(gzipMembers(chunked(input, 65536)));
  const b = await collect(gzipMembers(chunked(input, 3_000_001)));
  const c = await collect(gzipMembers(chunked(input, 999)));
  assert.ok(a.equals(b) && a.equals(c), 'member boundaries sit at fixed offsets of the input');
  assert.equal(gzipMemberCount(a), Math.ceil(input.length / GZIP_MEMBER_BYTES));
  assert.ok(zlib.gunzipSync(a).equals(input), 'zlib reads every member');
  assert.ok(execFileSync('gzip', ['-dc'], { input: a, maxBuffer: 64 << 20 }).equals(input), 'gzip -dc reads every member');
  // The random pieces are stored, the text piece is deflated.
  assert.ok(a.length < input.length - GZIP_MEMBER_BYTES / 2, `text shrank: ${a.length} of ${input.length}`);
  assert.ok(a.length > 2 * GZIP_MEMBER_BYTES, 'random pieces stay their size');
  // Empty input: one empty member, like gzip of nothing.
  const empty = await collect(gzipMembers(chunked(Buffer.alloc(0), 1)));
  assert.equal(zlib.gunzipSync(empty).length, 0);
});

test('looksIncompressible: random and already-gzipped data yes, text and zeros no', () => {
  assert.equal(looksIncompressible(randomBytes(GZIP_MEMBER_BYTES)), true);
  assert.equal(looksIncompressible(zlib.gzipSync(Buffer.from(randomBytes(1 << 21).toString('base64')))), true);
  assert.equal(looksIncompressible(Buffer.from('compressible text '.repeat(70_000))), false);
  assert.equal(looksIncompressible(Buffer.alloc(GZIP_MEMBER_BYTES)), false);
  assert.equal(looksIncompressible(randomBytes(1000)), false, 'small pieces are always deflated');
});

test('compressLayer: gzip and zstd blobs decompress to the tar, digests and sizes are the files\', diffId given is trusted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-compress-test-'));
  try {
    const input = mixedInput();
    const tar = join(dir, 'layer.tar');
    writeFileSync(tar, input);
    const diffId = sha256(input);

    const gz = await compressLayer(tar, { out: join(dir, 'layer.gz'), compression: 'gzip' });
    const gzBytes = readFileSync(join(dir, 'layer.gz'));
    assert.equal(gz.diffId, diffId);
    assert.equal(gz.digest, sha256(gzBytes));
    assert.equal(gz.size, gzBytes.length);
    assert.equal(gz.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.ok(zlib.gunzipSync(gzBytes).equals(input));
    assert.equal(gzipMemberCount(gzBytes), 4, 'parallel members, not one stream');
    assert.ok(gzBytes.equals(await collect(gzipMembers(chunked(input, 1 << 16)))), 'same bytes as the streaming path diffToLayer uses');

    const zs = await compressLayer(tar, { out: join(dir, 'layer.zst'), compression: 'zstd' });
    const zsBytes = readFileSync(join(dir, 'layer.zst'));
    assert.equal(zs.diffId, diffId);
    assert.equal(zs.digest, sha256(zsBytes));
    assert.equal(zs.size, zsBytes.length);
    assert.equal(zs.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    assert.ok(execFileSync('zstd', ['-dc'], { input: zsBytes, maxBuffer: 64 << 20 }).equals(input));
    // The same bytes a pipe into zstd gives (what diffToLayer writes): no content size in the frame.
    const piped = spawnSync('sh', ['-c', 'cat "$1" | zstd -3 -T0 -c -q', 'sh', tar], { maxBuffer: 64 << 20 });
    assert.ok(piped.stdout.equals(zsBytes));

    // A caller that knows the diffId (a store layer) is not second-guessed: no re-hash of the tar.
    const trusted = await compressLayer(tar, { out: join(dir, 'again.gz'), compression: 'gzip', diffId: 'sha256:' + 'a'.repeat(64) });
    assert.equal(trusted.diffId, 'sha256:' + 'a'.repeat(64));
    assert.equal(trusted.digest, gz.digest, 'deterministic');

    const none = await compressLayer(tar, { out: join(dir, 'copy.tar'), compression: 'none' });
    assert.equal(none.digest, diffId);
    assert.equal(none.diffId, diffId);

    // A failing compressor leaves no temp file and says what failed.
    await assert.rejects(compressLayer(join(dir, 'missing.tar'), { out: join(dir, 'x.gz'), compression: 'gzip' }), /ENOENT/);
    const path = process.env.PATH;
    process.env.PATH = join(dir, 'no-such-bin');
    try {
      await assert.rejects(compressLayer(tar, { out: join(dir, 'x.zst'), compression: 'zstd' }), /ENOENT|zstd/);
    } finally {
      process.env.PATH = path;
    }
    // zstd itself failing (it cannot read a directory) is reported with its exit code and message.
    await assert.rejects(compressLayer(tmpdir(), { out: join(dir, 'bad.zst'), compression: 'zstd', diffId }), /zstd failed \(exit \d+\).*[Rr]ead error/);
    assert.deepEqual(spawnSync('ls', [dir], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort(),
      ['again.gz', 'copy.tar', 'layer.gz', 'layer.tar', 'layer.zst']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('several layers compressed at once share the deflate jobs (never more than the cores) and get the same bytes as one at a time', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-compress-many-'));
  const original = zlib.gzip;
  let inFlight = 0;
  let peak = 0;
  try {
    const inputs = [0, 1, 2, 3].map((i) => {
      const file = join(dir, `layer${i}.tar`);
      writeFileSync(file, Buffer.concat([mixedInput(), Buffer.from(`layer ${i}\n`.repeat(50_000))]));
      return file;
    });
    const alone: string[] = [];
    for (const f of inputs) alone.push((await compressLayer(f, { out: `${f}.alone.gz`, compression: 'gzip' })).digest);
    (zlib as { gzip: unknown }).gzip = (buf: Buffer, opts: zlib.ZlibOptions, cb: (e: Error | null, out: Buffer) => void) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      original(buf, opts, (e, out) => {
        inFlight--;
        cb(e, out);
      });
    };
    const together = await Promise.all(inputs.map((f) => compressLayer(f, { out: `${f}.together.gz`, compression: 'gzip' })));
    assert.deepEqual(together.map((r) => r.digest), alone);
    for (const f of inputs) assert.ok(zlib.gunzipSync(readFileSync(`${f}.together.gz`)).equals(readFileSync(f)));
    assert.ok(peak >= 2, `members deflated in parallel: peak ${peak}`);
    assert.ok(peak <= Math.max(2, Math.min(availableParallelism(), 3)), `deflate jobs in flight across layers: ${peak}`);
  } finally {
    (zlib as { gzip: unknown }).gzip = original;
    rmSync(dir, { recursive: true, force: true });
  }
});
