// Two CI jobs export at the same time to one place. A folder is serialized by its lock and ends
// with both jobs' records; a registry ref is one manifest PUT (last writer wins). Either way the
// result is one complete, consistent cache: it lists, every blob it names is there, and a fresh
// machine gets all hits from it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, allCached, busyboxContext, compilerDockerfile, expectOk, folderManifest, sources, stepsSummary, type CacheIndexJson } from './support.js';
import { startRegistry } from '../helpers/registry.js';
import { pushBusybox } from '../helpers/base-images.js';

/** Builds `files` in a fresh machine from `cacheFrom`; whether every step was a hit. */
async function freshHits(name: string, files: Record<string, string>, args: string[], cleanup: Machine[]): Promise<{ hit: boolean; summary: string }> {
  const m = new Machine(name);
  cleanup.push(m);
  const r = await m.ok(m.context('ctx', files), [...args, '-o', 'type=cacheonly']);
  return { hit: allCached(r), summary: stepsSummary(r) };
}

test('two jobs exporting to one folder at once: serialized, both kept, nothing dangling', async (t) => {
  const machines: Machine[] = [];
  t.after(() => machines.forEach((m) => m.cleanup()));
  const bb = await busyboxContext();
  const v1 = { Dockerfile: compilerDockerfile('busybox'), ...sources(3, 'job-1') };
  const v2 = { Dockerfile: compilerDockerfile('busybox'), ...sources(3, 'job-2') };
  const a = new Machine('a');
  const b = new Machine('b');
  machines.push(a, b);
  const dir = join(a.root, 'shared');
  const to = ['--cache-to', `type=local,dest=${dir},mode=max,mounts=all,keep=20`];
  // The steps both jobs share (FROM, WORKDIR) must make the same bytes on both machines, or the
  // merged index holds one job's WORKDIR result and the other job's COPY built on another one:
  // without SOURCE_DATE_EPOCH the WORKDIR layer carries the second it ran in (as with BuildKit).
  const sde = ['--build-arg', 'SOURCE_DATE_EPOCH=1700000000'];
  const ctxA = a.context('ctx', v1);
  const ctxB = b.context('ctx', v2);
  // Builds that export at the same time, then bare `cache export`s racing harder (no build before).
  const [ra, rb] = await Promise.all([a.build(ctxA, [...bb, ...sde, ...to]), b.build(ctxB, [...bb, ...sde, ...to])]);
  expectOk(ra, 'job A');
  expectOk(rb, 'job B');
  // Readers meanwhile: every `cache ls` sees one whole cache (an export swaps index.json, then
  // deletes the blobs only the old one named).
  let exporting = true;
  const reader = (async () => {
    const seen: number[] = [];
    while (exporting) seen.push((await a.strata(['cache', 'ls', dir, '--format', 'json'])).code);
    return seen;
  })();
  for (let round = 0; round < 3; round++) {
    const spec = `type=local,dest=${dir},keep=20,mounts=all`;
    const rs = await Promise.all([a.strata(['cache', 'export', spec]), b.strata(['cache', 'export', spec]), a.strata(['cache', 'export', spec])]);
    rs.forEach((r, i) => expectOk(r, `cache export ${round}/${i}`));
  }
  exporting = false;
  const codes = await reader;
  assert.ok(codes.length > 0 && codes.every((c) => c === 0), `cache ls during exports: ${codes.join(',')}`);

  const index = await a.cacheLs(dir);
  const m = folderManifest(dir);
  const files = new Set(readdirSync(join(dir, 'blobs', 'sha256')));
  assert.deepEqual(files, new Set([m.manifestDigest, m.config.digest, ...m.layers.map((l) => l.digest)].map((d) => d.slice(7))), 'every referenced blob exists, no other file');
  assert.deepEqual(readdirSync(dir).sort(), ['blobs', 'index.json', 'oci-layout'], 'no lock or temp file left');
  assert.equal(index.exports.length, 11);
  const f1 = await freshHits('c1', v1, [...bb, ...sde, '--cache-from', `type=local,src=${dir}`], machines);
  const f2 = await freshHits('c2', v2, [...bb, ...sde, '--cache-from', `type=local,src=${dir}`], machines);
  assert.ok(f1.hit, f1.summary);
  assert.ok(f2.hit, f2.summary);
});

test('two jobs exporting to one registry ref at once: the last writer wins with a complete cache', async (t) => {
  const reg = await startRegistry();
  const machines: Machine[] = [];
  t.after(async () => {
    await reg.stop();
    machines.forEach((m) => m.cleanup());
  });
  const base = await pushBusybox(reg.host);
  const v1 = { Dockerfile: compilerDockerfile(base.ref), ...sources(3, 'job-1') };
  const v2 = { Dockerfile: compilerDockerfile(base.ref), ...sources(3, 'job-2') };
  const ref = `${reg.host}/ci/shared:main`;
  const a = new Machine('a');
  const b = new Machine('b');
  machines.push(a, b);
  const to = ['--cache-to', `type=registry,ref=${ref},mode=max,mounts=all`];
  const [ra, rb] = await Promise.all([a.build(a.context('ctx', v1), to), b.build(b.context('ctx', v2), to)]);
  expectOk(ra, 'job A');
  expectOk(rb, 'job B');

  const check = async (round: string) => {
    const index: CacheIndexJson = await a.cacheLs(`type=registry,ref=${ref}`);
    const res = await fetch(`http://${reg.host}/v2/ci/shared/manifests/main`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    const m = (await res.json()) as { layers: { digest: string }[] };
    for (const l of m.layers) {
      const head = await fetch(`http://${reg.host}/v2/ci/shared/blobs/${l.digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200, `${round}: ${l.digest} is in the registry`);
    }
    assert.deepEqual(new Set(m.layers.map((l) => l.digest)), new Set([...index.layers.map((l) => l.digest), ...index.mounts.map((x) => x.digest)]), `${round}: the manifest lists exactly the index's blobs`);
    const hits = [
      await freshHits(`c1-${round}`, v1, ['--cache-from', `type=registry,ref=${ref}`], machines),
      await freshHits(`c2-${round}`, v2, ['--cache-from', `type=registry,ref=${ref}`], machines),
    ];
    assert.ok(hits.some((h) => h.hit), `${round}: one of the two jobs is fully in the cache\n${hits.map((h) => h.summary).join('\n--\n')}`);
  };
  await check('builds');

  for (let round = 0; round < 2; round++) {
    const spec = `type=registry,ref=${ref},mounts=all`;
    const rs = await Promise.all([a.strata(['cache', 'export', spec]), b.strata(['cache', 'export', spec])]);
    rs.forEach((r, i) => expectOk(r, `cache export ${round}/${i}`));
  }
  await check('cache export');
  assert.ok(!existsSync(join(a.root, 'shared')));
});
