// What an export holds: mode=min only the target stage's steps, mode=max every stage's; and what
// exporting again to the same folder does: new blobs only, the last keep=N exports' records, and
// no blob that nothing references.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, machines, allCached, busyboxContext, compilerDockerfile, folderBlobs, folderManifest, sources, stepsSummary } from './support.js';

test('mode=min exports only the target stage, mode=max every stage; a min import still hits after the build stage reruns', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const min = join(a.root, 'min');
  const max = join(a.root, 'max');
  const buildMin = join(a.root, 'build-min');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${min}`, '--cache-to', `type=local,dest=${max},mode=max`]);
  // The same store, --target build: the build stage is now the target.
  await a.ok(join(a.root, 'ctx'), [...bb, '--target', 'build', '--cache-to', `type=local,dest=${buildMin},mode=min`]);

  const iMin = await a.cacheLs(min);
  const iMax = await a.cacheLs(max);
  const iBuild = await a.cacheLs(buildMin);
  const stages = (i: typeof iMin) => [...new Set(i.records.map((r) => /^\[([^ ]+) /.exec(r.description)?.[1]))].sort();
  assert.deepEqual(stages(iMin), ['stage-1'], JSON.stringify(iMin.records.map((r) => r.description)));
  assert.equal(iMin.records.length, 2);
  assert.deepEqual(stages(iMax), ['build', 'stage-1']);
  assert.equal(iMax.records.length, 5);
  assert.deepEqual(stages(iBuild), ['build']);
  assert.equal(iBuild.records.length, 3);
  // The min export's layers are those of its records only: not the compiler's layer.
  const minLayers = new Set(iMin.records.flatMap((r) => r.chain));
  assert.deepEqual(new Set(iMin.layers.map((l) => l.diffId)), minLayers);
  const compile = iMax.records.find((r) => r.description.includes('RUN --mount=type=cache'))!;
  assert.ok(!minLayers.has(compile.chain[compile.chain.length - 1]!), 'the build stage layer is not in the min export');
  // ...and no blob of it in the folder either.
  const minBlobs = new Set(readdirSync(join(min, 'blobs', 'sha256')));
  const compileBlob = iMax.layers.find((l) => l.diffId === compile.chain[compile.chain.length - 1])!.digest.slice(7);
  assert.ok(!minBlobs.has(compileBlob));
  // `strata cache ls` (table) names the steps.
  const table = await a.strata(['cache', 'ls', min]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /2 records, \d+ layers, 0 cache mounts, 1 export\(s\) kept/);
  assert.match(table.stdout, /\[stage-1 2\/3\] COPY --from=build/);

  // B with the min cache: the build stage reruns (to the same output) and the final stage hits.
  const r = await b.ok(b.context('ctx', files), [...bb, '--cache-from', `type=local,src=${min}`]);
  const [buildSteps, finalSteps] = [r.instructions.filter((s) => s.name.startsWith('[build ')), r.instructions.filter((s) => s.name.startsWith('[stage-1 '))];
  assert.ok(buildSteps.length === 3 && buildSteps.every((s) => !s.cached), stepsSummary(r));
  assert.ok(finalSteps.length === 2 && finalSteps.every((s) => s.cached), stepsSummary(r));
});

test('re-export to one folder: only new blobs written, the last keep=N exports kept, unreferenced blobs deleted', async (t) => {
  const a = new Machine('a');
  t.after(() => a.cleanup());
  const bb = await busyboxContext();
  const dir = join(a.root, 'cache');
  const ctx = a.context('ctx', { Dockerfile: compilerDockerfile('busybox'), ...sources(3, 'v1') });
  const to = ['--cache-to', `type=local,dest=${dir},mode=max,mounts=all,keep=2`];
  await a.ok(ctx, [...bb, ...to]);
  const blobs1 = folderBlobs(dir);
  const m1 = folderManifest(dir);
  const i1 = await a.cacheLs(dir);
  assert.equal(i1.exports.length, 1);
  // Every file in the folder is referenced, and every reference is a file.
  const refs = (m: typeof m1) => new Set([m.manifestDigest, m.config.digest, ...m.layers.map((l) => l.digest)].map((d) => d.slice(7)));
  assert.deepEqual(new Set(blobs1.keys()), refs(m1));

  // The same build again: nothing new but the index (config and manifest).
  await new Promise((r) => setTimeout(r, 20));
  await a.ok(ctx, [...bb, ...to]);
  const blobsSame = folderBlobs(dir);
  const mSame = folderManifest(dir);
  for (const [name, mtime] of blobs1) if (blobsSame.has(name)) assert.equal(blobsSame.get(name), mtime, `blob ${name} was not rewritten`);
  const newSame = [...blobsSame.keys()].filter((n) => !blobs1.has(n)).sort();
  assert.deepEqual(newSame, [mSame.manifestDigest.slice(7), mSame.config.digest.slice(7)].filter((d) => !blobs1.has(d)).sort(), 'only the index blobs are new');
  assert.equal((await a.cacheLs(dir)).records.length, 5, 'the same records, not duplicated');

  // v2: one source changes. New blobs are exactly the new layers, the new mount tarball and the index.
  writeFileSync(join(ctx, 'src', 'unit1.c'), 'int unit1(void) { return 100; } /* v2 */\n');
  await a.ok(ctx, [...bb, ...to]);
  const blobs2 = folderBlobs(dir);
  const m2 = folderManifest(dir);
  const i2 = await a.cacheLs(dir);
  for (const [name, mtime] of blobsSame) if (blobs2.has(name)) assert.equal(blobs2.get(name), mtime, `blob ${name} was not rewritten`);
  const written = [...blobs2.keys()].filter((n) => !blobsSame.has(n)).sort();
  const referencedBefore = refs(mSame);
  assert.deepEqual(written, [...refs(m2)].filter((d) => !referencedBefore.has(d)).sort(), 'new files = digests the old manifest did not reference');
  assert.deepEqual(new Set(blobs2.keys()), refs(m2));
  // keep=2: the v1 records are still there next to v2's (the unchanged ones are shared by key).
  assert.equal(i2.exports.length, 2);
  const v1Keys = new Set(i1.records.map((r) => r.key));
  assert.ok([...v1Keys].every((k) => i2.records.some((r) => r.key === k)), 'every v1 record kept');
  assert.ok(i2.records.length > 5, `v2 added records: ${i2.records.length}`);
  // One mount tarball per id: the v1 one is gone.
  assert.equal(i2.mounts.length, 1);
  const mount1 = i1.mounts[0]!.digest.slice(7);
  if (i2.mounts[0]!.digest.slice(7) !== mount1) assert.ok(!blobs2.has(mount1), 'the replaced mount tarball was deleted');

  // A fresh machine can build v1 from this cache: all hits.
  const b = new Machine('b');
  t.after(() => b.cleanup());
  const v1 = await b.ok(b.context('ctx', { Dockerfile: compilerDockerfile('busybox'), ...sources(3, 'v1') }), [...bb, '--cache-from', `type=local,src=${dir}`, '-o', 'type=cacheonly']);
  assert.ok(allCached(v1), stepsSummary(v1));

  // v3: a third export with keep=2 drops the v1 export's records and the blobs only they used.
  writeFileSync(join(ctx, 'src', 'unit1.c'), 'int unit1(void) { return 1000; } /* v3 */\n');
  await a.ok(ctx, [...bb, ...to]);
  const blobs3 = folderBlobs(dir);
  const i3 = await a.cacheLs(dir);
  assert.equal(i3.exports.length, 2);
  assert.ok(!i3.exports.some((e) => i1.exports.some((x) => x.id === e.id)), 'the v1 export is out');
  const v1Only = i1.records.filter((r) => !i2.records.some((x) => x.key === r.key && x.export === i2.exports[0]!.id));
  assert.ok(v1Only.length > 0);
  for (const r of v1Only) assert.ok(!i3.records.some((x) => x.key === r.key), `${r.description} (v1 only) dropped`);
  const liveLayers = new Set(i3.layers.map((l) => l.digest.slice(7)));
  for (const l of i1.layers) {
    if (!liveLayers.has(l.digest.slice(7))) assert.ok(!blobs3.has(l.digest.slice(7)), `unreferenced v1 layer blob ${l.digest} deleted`);
  }
  assert.deepEqual(new Set(blobs3.keys()), refs(folderManifest(dir)));
  // No temp files or lock left behind.
  assert.deepEqual(readdirSync(dir).sort(), ['blobs', 'index.json', 'oci-layout']);

  const c = new Machine('c');
  t.after(() => c.cleanup());
  const v1again = await c.ok(c.context('ctx', { Dockerfile: compilerDockerfile('busybox'), ...sources(3, 'v1') }), [...bb, '--cache-from', `type=local,src=${dir}`, '-o', 'type=cacheonly']);
  assert.ok(v1again.instructions.some((s) => !s.cached), 'v1 is no longer fully in the cache');
});

test('an exporter that died holding the folder lock: the next export takes over and cleans up', async (t) => {
  const a = new Machine('a');
  t.after(() => a.cleanup());
  const bb = await busyboxContext();
  const dir = join(a.root, 'cache');
  const ctx = a.context('ctx', { Dockerfile: compilerDockerfile('busybox'), ...sources(2) });
  await a.ok(ctx, [...bb, '--cache-to', `type=local,dest=${dir},mode=max`]);
  // What a kill -9 mid-export leaves: the lock (with a dead pid) and temp files.
  const { spawnSync } = await import('node:child_process');
  const { mkdirSync } = await import('node:fs');
  const dead = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
  mkdirSync(join(dir, '.strata-lock'));
  writeFileSync(join(dir, '.strata-lock', 'pid'), dead);
  writeFileSync(join(dir, `index.json.tmp-${dead}`), '{"partial');
  writeFileSync(join(dir, 'blobs', 'sha256', `${'ab'.repeat(32)}.tmp-${dead}`), 'partial blob');
  const r = await a.ok(ctx, [...bb, '--cache-to', `type=local,dest=${dir},mode=max`]);
  assert.match(r.stderr, /exported cache to /);
  assert.deepEqual(readdirSync(dir).sort(), ['blobs', 'index.json', 'oci-layout']);
  const m = folderManifest(dir);
  assert.deepEqual(new Set(readdirSync(join(dir, 'blobs', 'sha256'))), new Set([m.manifestDigest, m.config.digest, ...m.layers.map((l) => l.digest)].map((d) => d.slice(7))));
  assert.equal((await a.cacheLs(dir)).records.length, 5);
});
