// Layers bigger than one gzip member (1 MiB) through an export and an import: the exported gzip
// blob is several members (compressed in parallel), other tools read it, its digest verifies on
// import, a fresh store unpacks it and runs on it; zstd the same. A push of the image reuses the
// compressed variant the export made (one blob per layer and compression, not two).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { Machine, busyboxContext, stepsSummary, type CacheIndexJson } from './support.js';
import { startRegistry } from '../helpers/registry.js';

// 1.5 MiB of random bytes (stored members) then 2 MiB of text (deflated members).
const MAKE_BIG = 'RUN dd if=/dev/urandom of=/big.bin bs=1024 count=1536 2>/dev/null && yes "strata layer text line" | head -c 2097152 >> /big.bin && sha256sum /big.bin > /big.sum';

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** The layer the dd RUN made. */
function bigLayer(index: CacheIndexJson): CacheIndexJson['layers'][number] {
  const record = index.records.find((r) => r.description.includes('dd if=/dev/urandom'));
  const layer = index.layers.find((l) => l.diffId === record?.chain[record.chain.length - 1]);
  assert.ok(layer, JSON.stringify(index));
  return layer;
}

function gzipMembers(blob: Buffer): number {
  let n = 0;
  let rest = blob;
  while (rest.length > 0) {
    assert.ok(rest[0] === 0x1f && rest[1] === 0x8b, 'each member starts with the gzip magic');
    const r = zlib.inflateRawSync(rest.subarray(10), { info: true }) as unknown as { engine: { bytesWritten: number } };
    rest = rest.subarray(10 + r.engine.bytesWritten + 8);
    n++;
  }
  return n;
}

for (const compression of ['gzip', 'zstd'] as const) {
  test(`${compression}: a 3.5 MiB layer exported, read by ${compression}(1), imported into a fresh store and run on`, async (t) => {
    const a = new Machine(`big-a-${compression}`);
    const b = new Machine(`big-b-${compression}`);
    t.after(() => {
      a.cleanup();
      b.cleanup();
    });
    const bb = await busyboxContext();
    const dir = join(a.root, 'cache');
    await a.ok(a.context('ctx', { Dockerfile: `FROM busybox\n${MAKE_BIG}\n` }), [...bb, '--cache-to', `type=local,dest=${dir},mode=max,compression=${compression}`]);

    const big = bigLayer(await a.cacheLs(`type=local,src=${dir}`));
    assert.equal(big.mediaType, `application/vnd.oci.image.layer.v1.tar+${compression}`);
    const blob = readFileSync(join(dir, 'blobs', 'sha256', big.digest.slice(7)));
    assert.equal(sha256(blob), big.digest);
    assert.equal(blob.length, big.size);
    const tar = execFileSync(compression, ['-dc'], { input: blob, maxBuffer: 64 << 20 });
    assert.equal(sha256(tar), big.diffId, `${compression} -dc gives the layer tar`);
    if (compression === 'gzip') assert.ok(gzipMembers(blob) >= 3, 'one member per MiB of the tar');

    // B: a fresh store imports the cache; the RUN is a hit, the next step runs on the unpacked layer.
    const hit = await b.ok(b.context('ctx', { Dockerfile: `FROM busybox\n${MAKE_BIG}\nRUN sha256sum -c /big.sum && wc -c < /big.bin\n` }),
      [...bb, '--cache-from', `type=local,src=${dir}`]);
    const steps = hit.instructions;
    assert.ok(steps.find((s) => s.name.includes('dd if=/dev/urandom'))?.cached, stepsSummary(hit));
    const check = steps.find((s) => s.name.includes('sha256sum -c'));
    assert.ok(check && !check.cached, stepsSummary(hit));
    assert.ok(check.logs.some((l) => l.includes('/big.bin: OK')), JSON.stringify(check.logs));
    assert.ok(check.logs.some((l) => l.trim() === String(3 * 1024 * 1024 + 512 * 1024)), JSON.stringify(check.logs));
  });
}

test('a push after a cache export sends the same compressed blob the export wrote (one variant per layer)', async (t) => {
  const reg = await startRegistry();
  const a = new Machine('big-push');
  t.after(async () => {
    a.cleanup();
    await reg.stop();
  });
  const bb = await busyboxContext();
  const dir = join(a.root, 'cache');
  const ctx = a.context('ctx', { Dockerfile: `FROM busybox\n${MAKE_BIG}\n` });
  await a.ok(ctx, [...bb, '--cache-to', `type=local,dest=${dir},mode=max`]);
  const exported = bigLayer(await a.cacheLs(`type=local,src=${dir}`));
  await a.ok(ctx, [...bb, '-t', `${reg.host}/big/app:1`, '--push']);
  const res = await fetch(`http://${reg.host}/v2/big/app/manifests/1`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  const manifest = (await res.json()) as { layers: { digest: string; mediaType: string }[] };
  assert.ok(manifest.layers.some((l) => l.digest === exported.digest), `pushed ${JSON.stringify(manifest.layers)}, exported ${exported.digest}`);
  assert.equal(sha256(readFileSync(reg.blobDataPath(exported.digest))), exported.digest);
});
