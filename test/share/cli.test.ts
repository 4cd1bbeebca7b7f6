// `strata cache export|import|ls` outside a build: the same formats as --cache-to/--cache-from,
// through a folder and a registry; import --fetch makes a store independent of the source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, machines, allCached, busyboxContext, compilerDockerfile, expectOk, objectsFound, sources, stepsSummary, type CacheIndexJson } from './support.js';
import { startRegistry } from '../helpers/registry.js';

test('cache export / ls / import through a folder and a registry, then builds hit', async (t) => {
  const reg = await startRegistry();
  const machines: Machine[] = [];
  const mk = (n: string) => {
    const m = new Machine(n);
    machines.push(m);
    return m;
  };
  t.after(async () => {
    await reg.stop();
    machines.forEach((m) => m.cleanup());
  });
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const a = mk('a');
  await a.ok(a.context('ctx', files), bb);
  const dir = join(a.root, 'exported');

  // export: every record of the store (mode=max), the cache mount on request.
  const ex = expectOk(await a.strata(['cache', 'export', `type=local,dest=${dir},mounts=all`]), 'cache export');
  assert.match(ex.stdout, /^exported 5 records and 1 cache mount\(s\) to type=local,src=.* \(\d+ new blobs\)\n$/);
  const again = expectOk(await a.strata(['cache', 'export', `type=local,dest=${dir},mounts=all`]), 'cache export again');
  assert.match(again.stdout, /\(2 new blobs\)/, 'only the new index (config and manifest) is written');

  // ls: table and JSON, by folder path or spec.
  const table = expectOk(await a.strata(['cache', 'ls', dir]), 'cache ls');
  assert.match(table.stdout, /^KEY +CREATED +LAYERS +SIZE +STEP\n/);
  assert.match(table.stdout, /\[build 4\/4\] RUN --mount=type=cache/);
  assert.match(table.stdout, /cache mount cc: .* \(gzip\), last used /);
  assert.match(table.stdout, /5 records, \d+ layers, 1 cache mounts, 2 export\(s\) kept\n$/);
  const index: CacheIndexJson = await a.cacheLs(`type=local,src=${dir}`);
  assert.equal(index.records.length, 5);
  // keep defaults to 3 exports.
  for (let i = 0; i < 2; i++) expectOk(await a.strata(['cache', 'export', `type=local,dest=${dir},mounts=all`]), 'cache export');
  assert.equal((await a.cacheLs(dir)).exports.length, 3);
  assert.deepEqual(index.mounts.map((m) => m.id), ['cc']);

  // import (lazy): records and the mount, no layer; a later build hits without --cache-from.
  const b = mk('b');
  const imp = expectOk(await b.strata(['cache', 'import', `type=local,src=${dir}`]), 'cache import');
  assert.match(imp.stdout, new RegExp(`^imported 5 new records \\(${index.layers.length} layers listed\\); cache mounts seeded: cc\\n$`));
  assert.deepEqual(b.storeContent().layerDirs, []);
  const layerBlobs = index.layers.map((l) => l.digest.slice(7));
  assert.deepEqual(b.storeContent().blobs.filter((x) => layerBlobs.includes(x)), []);
  const hit = await b.ok(b.context('ctx', files), [...bb, '-o', 'type=cacheonly']);
  assert.ok(allCached(hit), stepsSummary(hit));
  assert.match(expectOk(await b.strata(['cache', 'import', `type=local,src=${dir}`]), 'import again').stdout, /^imported 0 new records/);

  // import --fetch: every layer now, so the store no longer needs the folder.
  const c = mk('c');
  expectOk(await c.strata(['cache', 'import', `type=local,src=${dir}`, '--fetch']), 'cache import --fetch');
  const have = new Set(c.storeContent().blobs);
  for (const d of layerBlobs) assert.ok(have.has(d), `layer blob ${d} fetched`);
  rmSync(dir, { recursive: true });
  const out = join(c.root, 'out');
  const built = await c.ok(c.context('ctx', files), [...bb, '-o', `type=local,dest=${out}`]);
  assert.ok(allCached(built), stepsSummary(built));
  assert.equal(readFileSync(join(out, 'usr/local/bin/app'), 'utf8'), ['src/unit1.c', 'src/unit2.c', 'src/unit3.c'].map((k) => files[k as keyof typeof files]).join(''));

  // Through a registry: export from C (its layers are all local now), import in D, build.
  const ref = `${reg.host}/team/cache:v1`;
  const exr = expectOk(await c.strata(['cache', 'export', `type=registry,ref=${ref},mounts=cc`]), 'cache export registry');
  assert.match(exr.stdout, /^exported 5 records and 1 cache mount\(s\) to type=registry,ref=/);
  const rIndex: CacheIndexJson = await c.cacheLs(`type=registry,ref=${ref}`);
  assert.deepEqual(rIndex.records.map((r) => r.key).sort(), index.records.map((r) => r.key).sort());
  assert.deepEqual(rIndex.records.map((r) => r.created).sort(), index.records.map((r) => r.created).sort(), 'creation times travel unchanged');
  const d = mk('d');
  const impr = expectOk(await d.strata(['cache', 'import', `type=registry,ref=${ref}`]), 'cache import registry');
  assert.match(impr.stdout, /imported 5 new records .*cache mounts seeded: cc/);
  // One changed file: the compiler sees the objects from the cache mount that travelled A -> C -> D.
  const ctxD = d.context('ctx', { ...files, 'src/unit3.c': 'int unit3(void) { return 33; }\n' });
  const changed = await d.ok(ctxD, [...bb, '-o', 'type=cacheonly']);
  assert.equal(objectsFound(changed), 2, stepsSummary(changed));
});

test('cache ls / import of a place without a cache fail clearly', async (t) => {
  const reg = await startRegistry();
  const m = new Machine('empty');
  t.after(async () => {
    await reg.stop();
    m.cleanup();
  });
  const empty = join(m.root, 'nothing');
  mkdirSync(empty);
  const ls = await m.strata(['cache', 'ls', empty]);
  assert.equal(ls.code, 1);
  assert.match(ls.stderr, /no strata cache at type=local,src=/);
  const imp = await m.strata(['cache', 'import', `type=local,src=${empty}`]);
  assert.equal(imp.code, 1);
  assert.match(imp.stderr, /no cache there yet/);
  const lsr = await m.strata(['cache', 'ls', `type=registry,ref=${reg.host}/none/here:latest`]);
  assert.equal(lsr.code, 1, lsr.stderr);
  assert.match(lsr.stderr, /no strata cache at type=registry,ref=/);
  // An image is not a cache.
  const { pushBusybox } = await import('../helpers/base-images.js');
  const bbImg = await pushBusybox(reg.host);
  const notCache = await m.strata(['cache', 'ls', `type=registry,ref=${bbImg.ref}`]);
  assert.notEqual(notCache.code, 0);
  assert.match(notCache.stderr, /is not a strata cache/);
  const bad = await m.strata(['cache', 'export', `type=s3,bucket=x`]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /cache type "s3" is not supported/);
  assert.ok(!existsSync(join(m.root, 'bucket')));
});

test('the cache is a plain OCI artifact: skopeo copies it from the registry to a folder, strata imports the copy', async (t) => {
  const { run } = await import('../build/harness.js');
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const [a, b] = machines(t, 'a', 'b');
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const ref = `${reg.host}/ci/cache:main`;
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=registry,ref=${ref},mode=max,mounts=all`]);
  const copy = join(b.root, 'copied');
  expectOk(await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${copy}:strata-cache`]), 'skopeo copy');
  const raw = expectOk(await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]), 'skopeo inspect').stdout;
  const { createHash } = await import('node:crypto');
  const idx = JSON.parse(readFileSync(join(copy, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  assert.equal(idx.manifests[0]!.digest, `sha256:${createHash('sha256').update(raw).digest('hex')}`, 'the manifest is copied byte for byte');
  const r = await b.ok(b.context('ctx', files), [...bb, '--cache-from', `type=local,src=${copy}`, '-o', 'type=cacheonly']);
  assert.ok(allCached(r), stepsSummary(r));
  assert.match(r.stderr, /cache mounts seeded: cc/);
});
