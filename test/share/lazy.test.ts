// Import reads only the cache index: a build whose steps are all hits and whose output needs no
// layer (-o type=cacheonly) fetches no layer blob, neither of the cache nor of the base image.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Machine, machines, allCached, busyboxContext, compilerDockerfile, sources, stepsSummary } from './support.js';
import { startRegistry } from '../helpers/registry.js';
import { pushBusybox } from '../helpers/base-images.js';

test('folder: an all-hit cacheonly build in a fresh store unpacks and copies no layer', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max`]);
  const index = await a.cacheLs(dir);

  const ctxB = b.context('ctx', files);
  const r = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir}`, '-o', 'type=cacheonly']);
  assert.ok(allCached(r), stepsSummary(r));
  const { layerDirs, blobs } = b.storeContent();
  assert.deepEqual(layerDirs, [], 'no layer was unpacked in B');
  const layerBlobs = new Set(index.layers.map((l) => l.digest.slice(7)));
  assert.deepEqual(blobs.filter((x) => layerBlobs.has(x)), [], 'no layer blob was copied into B');

  // The default image output needs the final stage's blobs (not the build stage's), still unpacked nowhere.
  const img = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir}`]);
  assert.ok(allCached(img), stepsSummary(img));
  assert.deepEqual(b.storeContent().layerDirs, [], 'writing the image unpacks nothing');
  const buildOnly = index.records.filter((rec) => /^\[build /.test(rec.description)).flatMap((rec) => rec.chain);
  const finalOnly = new Set(index.records.filter((rec) => /^\[stage-1 /.test(rec.description)).flatMap((rec) => rec.chain));
  const digestOf = new Map(index.layers.map((l) => [l.diffId, l.digest.slice(7)]));
  const now = new Set(b.storeContent().blobs);
  for (const d of finalOnly) assert.ok(now.has(digestOf.get(d)!), `final-stage layer ${d} is in B for the image`);
  for (const d of buildOnly.filter((x) => !finalOnly.has(x))) assert.ok(!now.has(digestOf.get(d)!), `build-stage layer ${d} stayed in the cache`);
});

test('registry: an all-hit cacheonly build in a fresh store GETs no layer blob (cache or base image)', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const [a, b] = machines(t, 'a', 'b');
  const base = await pushBusybox(reg.host);
  const files = { Dockerfile: compilerDockerfile(base.ref), ...sources(3) };
  const ref = `${reg.host}/ci/cache:latest`;
  await a.ok(a.context('ctx', files), ['--cache-to', `type=registry,ref=${ref},mode=max,mounts=all`]);
  const index = await a.cacheLs(`type=registry,ref=${ref}`);
  const baseLayers = ((await (await fetch(`http://${reg.host}/v2/busybox/manifests/latest`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
  assert.ok(baseLayers.length > 0);
  const layerDigests = new Set([...index.layers.map((l) => l.digest), ...baseLayers]);

  const before = (await reg.requests()).length;
  const ctxB = b.context('ctx', files);
  const r = await b.ok(ctxB, ['--cache-from', `type=registry,ref=${ref},mounts=none`, '-o', 'type=cacheonly']);
  assert.ok(allCached(r), stepsSummary(r));
  const during = (await reg.requests()).slice(before);
  const blobGets = during.filter((q) => q.method === 'GET' && q.path.includes('/blobs/'));
  const layerGets = blobGets.filter((q) => layerDigests.has(q.path.slice(q.path.lastIndexOf('/') + 1)));
  assert.deepEqual(layerGets, [], 'no layer blob was fetched');
  // What it did fetch: the cache index (config of the artifact) and the base image's config.
  assert.ok(blobGets.length >= 2, JSON.stringify(blobGets));
  assert.deepEqual(b.storeContent().layerDirs, []);

  // A step that runs on top of the cached layers fetches exactly the layers it needs.
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(ctxB, 'Dockerfile'), compilerDockerfile(base.ref) + 'RUN cat /built.txt > /again.txt\n');
  const before2 = (await reg.requests()).length;
  const r2 = await b.ok(ctxB, ['--cache-from', `type=registry,ref=${ref},mounts=none`, '-o', 'type=cacheonly']);
  const ran = r2.instructions.filter((s) => !s.cached);
  assert.equal(ran.length, 1, stepsSummary(r2));
  const gets2 = (await reg.requests()).slice(before2).filter((q) => q.method === 'GET' && q.path.includes('/blobs/'));
  const fetched = new Set(gets2.map((q) => q.path.slice(q.path.lastIndexOf('/') + 1)).filter((d) => layerDigests.has(d)));
  const finalRecord = index.records.find((rec) => rec.description.startsWith('[stage-1 3/3]'));
  assert.ok(finalRecord, JSON.stringify(index.records.map((x) => x.description)));
  const digestOf = new Map(index.layers.map((l) => [l.diffId, l.digest]));
  const wanted = new Set(finalRecord.chain.map((d) => digestOf.get(d)));
  assert.deepEqual([...fetched].sort(), [...wanted].sort(), 'the final stage chain, nothing of the build stage');

  // Exporting to another repository of the same registry: layers B never fetched are mounted
  // across repositories, not downloaded; the new cache is complete.
  const other = `${reg.host}/ci/other:pr-1`;
  const before3 = (await reg.requests()).length;
  const r3 = await b.ok(ctxB, ['--cache-from', `type=registry,ref=${ref},mounts=none`, '--cache-to', `type=registry,ref=${other},mode=max`, '-o', 'type=cacheonly']);
  assert.ok(allCached(r3), stepsSummary(r3));
  const during3 = (await reg.requests()).slice(before3);
  const gets3 = during3.filter((q) => q.method === 'GET' && layerDigests.has(q.path.slice(q.path.lastIndexOf('/') + 1)));
  assert.deepEqual(gets3, [], 'no layer fetched to export it');
  assert.ok(during3.some((q) => q.method === 'POST' && q.path.startsWith('/v2/ci/other/blobs/uploads/') && q.path.includes('mount=')), 'cross-repository mounts');
  const c = new Machine('c');
  t.after(() => c.cleanup());
  const r4 = await c.ok(c.context('ctx', { ...files, Dockerfile: compilerDockerfile(base.ref) + 'RUN cat /built.txt > /again.txt\n' }), ['--cache-from', `type=registry,ref=${other}`, '-o', `type=local,dest=${join(c.root, 'out')}`]);
  assert.ok(allCached(r4), stepsSummary(r4));
});

test('CI loop (--cache-from X --cache-to X): exporting back fetches no layer the destination already has', async (t) => {
  const reg = await startRegistry();
  const a = new Machine('a');
  const b = new Machine('b');
  const c = new Machine('c');
  t.after(async () => {
    await reg.stop();
    for (const m of [a, b, c]) m.cleanup();
  });
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max,mounts=all`]);
  const index = await a.cacheLs(dir);
  const layerBlobs = new Set(index.layers.map((l) => l.digest.slice(7)));

  // B: all hits, exported back to the same folder and to a registry.
  const ref = `${reg.host}/ci/loop:main`;
  const ctxB = b.context('ctx', files);
  const r = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir}`, '--cache-to', `type=local,dest=${dir},mode=max,mounts=all`, '-o', 'type=cacheonly']);
  assert.ok(allCached(r), stepsSummary(r));
  assert.deepEqual(b.storeContent().blobs.filter((x) => layerBlobs.has(x)), [], 'no layer blob copied into B to export it where it already is');
  const after = await b.cacheLs(dir);
  assert.deepEqual(after.records.map((x) => x.key).sort(), index.records.map((x) => x.key).sort());
  const { existsSync } = await import('node:fs');
  for (const l of after.layers) assert.ok(existsSync(join(dir, 'blobs', 'sha256', l.digest.slice(7))), `${l.digest} is in the folder`);

  // To another destination the layers must travel: B fetches them (verified) and writes them.
  const r2 = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir}`, '--cache-to', `type=registry,ref=${ref},mode=max`, '-o', 'type=cacheonly']);
  assert.ok(allCached(r2), stepsSummary(r2));
  const pushed = await b.cacheLs(`type=registry,ref=${ref}`);
  assert.equal(pushed.records.length, index.records.length);
  // C imports from the registry: complete, all hits, and the image output gets every blob.
  const r3 = await c.ok(c.context('ctx', files), [...bb, '--cache-from', `type=registry,ref=${ref}`, '-o', `type=local,dest=${join(c.root, 'out')}`]);
  assert.ok(allCached(r3), stepsSummary(r3));

  // And back through the registry: B exporting to the ref it imported from GETs no layer.
  const d = new Machine('d');
  t.after(() => d.cleanup());
  const before = (await reg.requests()).length;
  const r4 = await d.ok(d.context('ctx', files), [...bb, '--cache-from', `type=registry,ref=${ref}`, '--cache-to', `type=registry,ref=${ref},mode=max`, '-o', 'type=cacheonly']);
  assert.ok(allCached(r4), stepsSummary(r4));
  const gets = (await reg.requests()).slice(before).filter((q) => q.method === 'GET' && q.path.includes('/blobs/') && layerBlobs.has(q.path.slice(q.path.lastIndexOf(':') + 1)));
  assert.deepEqual(gets, []);
  assert.equal((await d.cacheLs(`type=registry,ref=${ref}`)).records.length, index.records.length);
});
