// A damaged cache never breaks a build: a layer blob that fails verification (changed bytes,
// truncated, in a folder or in the registry's storage) is named in a warning, the records built on
// it are dropped and those steps run again; a damaged index is refused with a warning and the build
// goes on without that cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, machines, allCached, busyboxContext, compilerDockerfile, folderManifest, sources, stepsSummary, type Built, type CacheIndexJson } from './support.js';
import { startRegistry } from '../helpers/registry.js';
import { pushBusybox } from '../helpers/base-images.js';

/** Flips bytes in the middle of a file, keeping its size. */
function flipBytes(path: string): void {
  const size = statSync(path).size;
  const fd = openSync(path, 'r+');
  const at = Math.floor(size / 2);
  const orig = Buffer.alloc(8);
  const buf = readFileSync(path).subarray(at, at + 8);
  buf.copy(orig);
  for (let i = 0; i < orig.length; i++) orig[i] = orig[i]! ^ 0xff;
  writeSync(fd, orig, 0, orig.length, at);
  closeSync(fd);
}

/** The layer a record added (the top of its chain) and its blob digest. */
function topLayer(index: CacheIndexJson, descriptionPart: string): { diffId: string; digest: string } {
  const rec = index.records.find((r) => r.description.includes(descriptionPart));
  assert.ok(rec, `no record for ${descriptionPart}: ${index.records.map((r) => r.description).join(' | ')}`);
  const diffId = rec.chain[rec.chain.length - 1]!;
  return { diffId, digest: index.layers.find((l) => l.diffId === diffId)!.digest };
}

const ranAgain = (b: Built, part: string) => b.instructions.find((s) => s.name.includes(part))?.miss !== undefined;

function checkOutput(dir: string, files: Record<string, string>): void {
  const app = Object.keys(files).filter((k) => k.startsWith('src/')).sort().map((k) => files[k]).join('');
  assert.equal(readFileSync(join(dir, 'usr/local/bin/app'), 'utf8'), app);
  assert.match(readFileSync(join(dir, 'built.txt'), 'utf8'), /^linked \d+ bytes\n$/);
}

async function exported(a: Machine, bb: string[], files: Record<string, string>, dest: string): Promise<void> {
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dest},mode=max,mounts=all`]);
}

test('folder: a changed or truncated layer blob is named, its records dropped, those steps rerun, the build succeeds', async (t) => {
  const a = new Machine('a');
  t.after(() => a.cleanup());
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const dir = join(a.root, 'cache');
  await exported(a, bb, files, dir);
  const index = await a.cacheLs(dir);
  const copyFrom = topLayer(index, 'COPY --from=build');

  for (const damage of ['changed', 'truncated'] as const) {
    const broken = join(a.root, `cache-${damage}`);
    await a.ok(a.context(`ctx-${damage}`, files), [...bb, '--cache-to', `type=local,dest=${broken},mode=max`]);
    const blob = join(broken, 'blobs', 'sha256', copyFrom.digest.slice(7));
    if (damage === 'changed') flipBytes(blob);
    else truncateSync(blob, Math.floor(statSync(blob).size / 2));

    const b = new Machine(`b-${damage}`);
    t.after(() => b.cleanup());
    const out = join(b.root, 'out');
    const r = await b.build(b.context('ctx', files), [...bb, '--cache-from', `type=local,src=${broken}`, '-o', `type=local,dest=${out}`]);
    assert.equal(r.code, 0, `${damage}: the build succeeds\n${r.stderr}`);
    const w = r.warnings.find((x) => x.includes(copyFrom.digest));
    assert.ok(w, `${damage}: a warning names ${copyFrom.digest}:\n${r.warnings.join('\n')}`);
    assert.match(w, /dropped \d+ cache record/);
    // The steps built on the bad layer ran again; the build stage (its layers are fine) did not.
    assert.ok(ranAgain(r, 'COPY --from=build') && ranAgain(r, 'RUN echo "linked'), stepsSummary(r));
    for (const s of r.instructions.filter((x) => x.name.startsWith('[build '))) assert.ok(s.cached && s.miss === undefined, stepsSummary(r));
    checkOutput(out, files);

    // The next build of B is all hits from its own (good) records.
    const again = await b.ok(join(b.root, 'ctx'), [...bb, '--cache-from', `type=local,src=${broken}`, '-o', 'type=cacheonly']);
    assert.ok(allCached(again), stepsSummary(again));
    assert.deepEqual(again.warnings, []);
  }
});

test('folder: a damaged cache index is refused with a warning and the build goes on without it', async (t) => {
  const a = new Machine('a');
  t.after(() => a.cleanup());
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const cases: [string, (dir: string) => void, RegExp][] = [
    ['changed config (the cache index)', (dir) => flipBytes(join(dir, 'blobs', 'sha256', folderManifest(dir).config.digest.slice(7))), /does not match its digest/],
    ['truncated config', (dir) => { const p = join(dir, 'blobs', 'sha256', folderManifest(dir).config.digest.slice(7)); truncateSync(p, 10); }, /does not match its digest/],
    ['missing manifest', (dir) => writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 10 }] })), /missing/],
    ['garbage index.json', (dir) => writeFileSync(join(dir, 'index.json'), '{"schemaVersion": 2, "manif'), /./],
  ];
  for (const [what, damage, why] of cases) {
    const dir = join(a.root, `cache-${what.replace(/\W+/g, '-')}`);
    await exported(a, bb, files, dir);
    damage(dir);
    const b = new Machine('b');
    t.after(() => b.cleanup());
    const out = join(b.root, 'out');
    const r = await b.build(b.context('ctx', files), [...bb, '--cache-from', `type=local,src=${dir}`, '-o', `type=local,dest=${out}`]);
    assert.equal(r.code, 0, `${what}: the build goes on\n${r.stderr}`);
    const w = r.warnings.find((x) => x.includes('--cache-from') && x.includes(dir));
    assert.ok(w, `${what}: a warning names the cache:\n${r.stderr}`);
    assert.match(w, why, what);
    assert.ok(r.instructions.every((s) => !s.cached), `${what}: nothing came from the refused cache\n${stepsSummary(r)}`);
    checkOutput(out, files);
  }
});

test('registry: a corrupted blob in the registry storage is named, dropped and rebuilt', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const [a, b] = machines(t, 'a', 'b');
  const base = await pushBusybox(reg.host);
  const files = { Dockerfile: compilerDockerfile(base.ref), ...sources(3) };
  const ref = `${reg.host}/ci/cache:tampered`;
  await a.ok(a.context('ctx', files), ['--cache-to', `type=registry,ref=${ref},mode=max`]);
  const index = await a.cacheLs(`type=registry,ref=${ref}`);
  const bad = topLayer(index, 'RUN echo "linked');
  flipBytes(reg.blobDataPath(bad.digest));

  const out = join(b.root, 'out');
  const r = await b.build(b.context('ctx', files), ['--cache-from', `type=registry,ref=${ref}`, '-o', `type=local,dest=${out}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.warnings.some((x) => x.includes(bad.digest)), r.warnings.join('\n'));
  assert.ok(ranAgain(r, 'RUN echo "linked'), stepsSummary(r));
  assert.ok(!ranAgain(r, 'COPY --from=build'), `only the step on the bad layer reruns\n${stepsSummary(r)}`);
  checkOutput(out, files);

  // A tampered index (the artifact's config blob) is refused, the build runs without it.
  const cfg = ((await (await fetch(`http://${reg.host}/v2/ci/cache/manifests/tampered`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { config: { digest: string } }).config.digest;
  flipBytes(reg.blobDataPath(cfg));
  const c = new Machine('c');
  t.after(() => c.cleanup());
  const r2 = await c.build(c.context('ctx', files), ['--cache-from', `type=registry,ref=${ref}`, '-o', 'type=cacheonly']);
  assert.equal(r2.code, 0, r2.stderr);
  assert.ok(r2.warnings.some((x) => x.includes('--cache-from') && x.includes(ref)), r2.stderr);
  assert.ok(r2.instructions.every((s) => !s.cached), stepsSummary(r2));
});

test('a bad imported layer met while exporting leaves its records out of the export, with a warning', async (t) => {
  const [a, b, c] = machines(t, 'a', 'b', 'c');
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const dir = join(a.root, 'cache');
  await exported(a, bb, files, dir);
  const index = await a.cacheLs(dir);
  // The compiler's layer: the final stage only needs its selection checksum, so the build never reads it.
  const bad = topLayer(index, 'RUN --mount=type=cache');
  flipBytes(join(dir, 'blobs', 'sha256', bad.digest.slice(7)));

  const other = join(b.root, 'other-cache');
  const r = await b.build(b.context('ctx', files), [...bb, '--cache-from', `type=local,src=${dir}`, '--cache-to', `type=local,dest=${other},mode=max`, '-o', 'type=cacheonly']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(allCached(r), stepsSummary(r));
  const w = r.warnings.find((x) => x.includes(bad.digest));
  assert.ok(w, r.stderr);
  assert.match(w, /left out of the cache export/);
  const out = await b.cacheLs(other);
  assert.ok(!out.records.some((x) => x.chain.includes(bad.diffId)), 'no exported record uses the bad layer');
  assert.ok(out.records.some((x) => x.description.includes('COPY --from=build')), 'the rest is exported');
  assert.deepEqual(new Set(readdirSync(join(other, 'blobs', 'sha256'))), new Set([folderManifest(other).manifestDigest, folderManifest(other).config.digest, ...folderManifest(other).layers.map((l) => l.digest)].map((d) => d.slice(7))));

  // What was exported is sound: C gets the final stage from it, and the build stage reruns.
  const r2 = await c.ok(c.context('ctx', files), [...bb, '--cache-from', `type=local,src=${other}`, '-o', `type=local,dest=${join(c.root, 'out')}`]);
  assert.ok(r2.instructions.filter((s) => s.name.startsWith('[stage-1 ')).every((s) => s.cached), stepsSummary(r2));
  assert.deepEqual(r2.warnings, []);
  checkOutput(join(c.root, 'out'), files);
});

test('a damaged cache mount tarball: that mount is not seeded (warning), the records are used all the same', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const dir = join(a.root, 'cache');
  await exported(a, bb, files, dir);
  const mount = (await a.cacheLs(dir)).mounts[0]!;
  flipBytes(join(dir, 'blobs', 'sha256', mount.digest.slice(7)));

  // mounts=all: seeded at once (without it, a mount waits for a step to use it; none does here).
  const r = await b.ok(b.context('ctx', files), [...bb, '--cache-from', `type=local,src=${dir},mounts=all`, '-o', 'type=cacheonly']);
  assert.ok(allCached(r), stepsSummary(r));
  const w = r.warnings.find((x) => x.includes(mount.digest));
  assert.ok(w, r.stderr);
  assert.match(w, /cache mount cc not seeded/);
  assert.doesNotMatch(w, /ignored/, 'the cache itself is not refused');
  assert.match(r.stderr, /imported cache: 5 new records, .*cache mounts seeded: none/);
  assert.notEqual((await b.strata(['mount', 'path', 'cc'])).code, 0, 'no mount cc in B');
});

test('many bad layers in one cache: every one is dropped in turn and the build still succeeds', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const bb = await busyboxContext();
  const parts = [1, 2, 3, 4, 5];
  const files = {
    Dockerfile: [
      ...parts.map((k) => `FROM busybox AS part${k}\nRUN echo part ${k} > /part${k}.txt\n`),
      'FROM busybox',
      ...parts.map((k) => `COPY --from=part${k} /part${k}.txt /parts/`),
      'RUN cat /parts/* > /all.txt',
      '',
    ].join('\n'),
  };
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max`]);
  const index = await a.cacheLs(dir);
  // Every layer strata built is damaged (the base image's is not in play: B has it from its layout).
  const base = index.records[0]!.chain[0];
  const damaged = index.layers.filter((l) => l.diffId !== base);
  assert.equal(damaged.length, 11);
  for (const l of damaged) flipBytes(join(dir, 'blobs', 'sha256', l.digest.slice(7)));

  const out = join(b.root, 'out');
  const r = await b.build(b.context('ctx', files), [...bb, '--cache-from', `type=local,src=${dir}`, '-o', `type=local,dest=${out}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.warnings.length >= 2, r.warnings.join('\n'));
  for (const w of r.warnings) assert.ok(damaged.some((l) => w.includes(l.digest)), w);
  assert.equal(readFileSync(join(out, 'all.txt'), 'utf8'), parts.map((k) => `part ${k}\n`).join(''));
});

test('registry: a layer blob gone from the registry (e.g. garbage-collected) is dropped and rebuilt', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const [a, b] = machines(t, 'a', 'b');
  const base = await pushBusybox(reg.host);
  const files = { Dockerfile: compilerDockerfile(base.ref), ...sources(3) };
  const ref = `${reg.host}/ci/cache:gc`;
  await a.ok(a.context('ctx', files), ['--cache-to', `type=registry,ref=${ref},mode=max`]);
  const index = await a.cacheLs(`type=registry,ref=${ref}`);
  const gone = topLayer(index, 'COPY --from=build');
  const { rmSync } = await import('node:fs');
  const { dirname } = await import('node:path');
  rmSync(dirname(reg.blobDataPath(gone.digest)), { recursive: true });

  const out = join(b.root, 'out');
  const r = await b.build(b.context('ctx', files), ['--cache-from', `type=registry,ref=${ref}`, '-o', `type=local,dest=${out}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.warnings.some((x) => x.includes(gone.digest)), r.warnings.join('\n'));
  assert.ok(ranAgain(r, 'COPY --from=build') && ranAgain(r, 'RUN echo "linked'), stepsSummary(r));
  checkOutput(out, files);
});
