// Two CI runners share a build: job A builds with a compiler cache mount and exports everything
// (mode=max, mounts=all); job B, with an empty store, imports it: every step is a hit, and after a
// one-file change the compiler sees A's object files. Once through a folder, once through a registry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, machines, allCached, busyboxContext, compilerDockerfile, folderManifest, objectsFound, runStep, sources, stepsSummary } from './support.js';
import { startRegistry } from '../helpers/registry.js';
import { pushBusybox } from '../helpers/base-images.js';

async function shareScenario(t: { after(fn: () => unknown): void }, opts: { from: string; baseArgs: string[]; cacheTo: string; cacheFrom: string }) {
  const [a, b] = machines(t, 'a', 'b');
  const files = { Dockerfile: compilerDockerfile(opts.from), ...sources(4) };
  const ctxA = a.context('ctx', files);
  const first = await a.ok(ctxA, [...opts.baseArgs, '--cache-to', opts.cacheTo]);
  assert.equal(objectsFound(first), 0, 'A starts with an empty compiler cache');
  assert.ok(first.instructions.every((s) => !s.cached), stepsSummary(first));
  assert.match(first.stderr, /exported cache to .*: 5 records, 1 cache mount/);

  // B: same sources (its own checkout), a fresh store.
  const ctxB = b.context('ctx', files);
  const hit = await b.ok(ctxB, [...opts.baseArgs, '--cache-from', opts.cacheFrom]);
  assert.ok(allCached(hit), `every step of B is a hit:\n${stepsSummary(hit)}`);
  assert.match(hit.stderr, /imported cache: 5 new records, .* cache mounts seeded: cc/);

  // A one-file change: the compiler runs again and finds A's objects for the other three files.
  writeFileSync(join(ctxB, 'src', 'unit2.c'), 'int unit2(void) { return 22; }\n');
  const changed = await b.ok(ctxB, [...opts.baseArgs, '--cache-from', opts.cacheFrom]);
  const run = runStep(changed);
  assert.ok(run && !run.cached, stepsSummary(changed));
  assert.equal(objectsFound(changed), 3, `the RUN sees A's cache mount: ${JSON.stringify(run?.logs)}`);
  assert.ok(run!.logs.includes('objects built: 1'), JSON.stringify(run!.logs));
  const copySrc = changed.instructions.find((s) => s.name.includes('COPY src/'));
  assert.ok(copySrc && !copySrc.cached, 'the changed source reruns the COPY');
  const workdir = changed.instructions.find((s) => s.name.includes('WORKDIR'));
  assert.ok(workdir?.cached, 'steps before the change stay hits');
}

test('cache shared through a folder: all hits in a fresh store, and the compiler cache mount travels', async (t) => {
  const a = new Machine('dir');
  t.after(() => a.cleanup());
  const dir = join(a.root, 'shared-cache');
  await shareScenario(t, {
    from: 'busybox',
    baseArgs: await busyboxContext(),
    cacheTo: `type=local,dest=${dir},mode=max,mounts=all`,
    cacheFrom: `type=local,src=${dir}`,
  });
});

test('cache shared through a registry: all hits in a fresh store, and the compiler cache mount travels', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const base = await pushBusybox(reg.host);
  const ref = `${reg.host}/app/cache:main`;
  const before = (await reg.requests()).length;
  await shareScenario(t, {
    from: base.ref,
    baseArgs: [],
    cacheTo: `type=registry,ref=${ref},mode=max,mounts=all`,
    cacheFrom: `type=registry,ref=${ref}`,
  });
  // One export is one manifest PUT (the import side only reads it).
  const puts = (await reg.requests()).slice(before).filter((q) => q.method === 'PUT' && q.path.includes('/manifests/'));
  assert.deepEqual(puts.map((q) => q.path), ['/v2/app/cache/manifests/main']);
  // The artifact is an OCI image manifest with strata's artifact type and cache index config.
  const res = await fetch(`http://${reg.host}/v2/app/cache/manifests/main`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(res.status, 200);
  const m = (await res.json()) as { mediaType: string; artifactType: string; config: { mediaType: string }; layers: { mediaType: string; annotations?: Record<string, string> }[] };
  assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(m.artifactType, 'application/vnd.strata.cache.v1');
  assert.equal(m.config.mediaType, 'application/vnd.strata.cache.config.v1+json');
  assert.ok(m.layers.some((l) => l.annotations?.['dev.strata.cache.mount'] === 'cc' && l.mediaType === 'application/vnd.strata.cache.mount.v1.tar+gzip'), JSON.stringify(m.layers));
});

test('compression=zstd: layers and the mount tarball travel as zstd and unpack on the other side', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max,mounts=all,compression=zstd`]);
  const m = folderManifest(dir);
  const index = await a.cacheLs(dir);
  // Layers strata built are zstd; the base image's layer is exported as it came (gzip).
  const baseLayer = index.records[0]!.chain[0];
  assert.ok(index.records.every((r) => r.chain[0] === baseLayer));
  for (const l of index.layers) {
    assert.equal(l.mediaType, l.diffId === baseLayer ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar+zstd', JSON.stringify(l));
  }
  assert.ok(m.layers.some((l) => l.mediaType === 'application/vnd.strata.cache.mount.v1.tar+zstd'), JSON.stringify(m.layers));
  // zstd really: the magic number 28 b5 2f fd.
  const zl = index.layers.find((l) => l.mediaType.endsWith('+zstd'))!;
  assert.equal(readFileSync(join(dir, 'blobs', 'sha256', zl.digest.slice(7))).subarray(0, 4).toString('hex'), '28b52ffd');

  const ctxB = b.context('ctx', files);
  const out = join(b.root, 'out');
  const hit = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir}`, '-o', `type=local,dest=${out}`]);
  assert.ok(allCached(hit), stepsSummary(hit));
  assert.match(hit.stderr, /cache mounts seeded: cc/);
  assert.equal(readFileSync(join(out, 'usr/local/bin/app'), 'utf8'), Object.keys(files).filter((k) => k.startsWith('src/')).sort().map((k) => files[k as keyof typeof files]).join(''));
  writeFileSync(join(ctxB, 'src', 'unit1.c'), 'int unit1(void) { return 11; }\n');
  const changed = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir}`, '-o', 'type=cacheonly']);
  assert.equal(objectsFound(changed), 2, stepsSummary(changed));
});
