// Import speed without losing guarantees: cache mounts seed in the background (a step that uses
// one waits for it; `strata mount` after the command sees it whole) and cached layers unpack as
// they stream in from the cache (a damaged blob leaves neither a layer nor a blob behind).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { Machine, machines, busyboxContext, expectOk, stepsSummary } from './support.js';
import { Store } from '../../src/cache/store.js';
import { acquireCacheMount, cacheMountDir, cacheMountSeeded, seedCacheMount, startCacheMountSeed } from '../../src/cache/cache-mounts.js';
import { readThrough } from '../../src/snapshot/streams.js';

const FILES = 3000;

/** A: fills cache mount `big` with many files (slow to unpack here) and a marker, exports it. */
async function exportBigMount(a: Machine, bb: string[], dir: string): Promise<void> {
  const df = [
    'FROM busybox',
    `RUN --mount=type=cache,id=big,target=/cache sh -c 'mkdir -p /cache/d && cd /cache/d && seq 1 ${FILES} | xargs touch && echo from-a > /cache/marker'`,
    '',
  ].join('\n');
  await a.ok(a.context('fill', { Dockerfile: df }), [...bb, '--cache-to', `type=local,dest=${dir},mode=max,mounts=all`, '-o', 'type=cacheonly']);
}

async function mountDir(m: Machine, id: string): Promise<string> {
  const r = expectOk(await m.strata(['mount', 'path', id]), `mount path ${id}`);
  return r.stdout.trim();
}

test('a step using an imported cache mount sees all of it although seeding runs in the background; mount path after the build and after cache import sees it too', async (t) => {
  const [a, b, c] = machines(t, 'a', 'b', 'c');
  const bb = await busyboxContext();
  const dir = join(a.root, 'cache');
  await exportBigMount(a, bb, dir);

  // B: a step A never ran (a miss) reads the mount right after the import started seeding it.
  const read = ['FROM busybox', "RUN --mount=type=cache,id=big,target=/cache sh -c 'echo files: $(ls /cache/d | wc -l); echo marker: $(cat /cache/marker)'", ''].join('\n');
  const r = await b.ok(b.context('read', { Dockerfile: read }), [...bb, '--cache-from', `type=local,src=${dir}`, '-o', 'type=cacheonly']);
  assert.match(r.stderr, /cache mounts seeded: big/);
  const run = r.instructions.find((s) => s.name.includes('RUN --mount'));
  assert.ok(run && !run.cached, stepsSummary(r));
  assert.ok(run.logs.includes(`files: ${FILES}`), JSON.stringify(run.logs));
  assert.ok(run.logs.includes('marker: from-a'), JSON.stringify(run.logs));
  assert.equal(readdirSync(join(await mountDir(b, 'big'), 'd')).length, FILES);

  // C: `strata cache import` alone; the next command sees the mount whole.
  const imp = expectOk(await c.strata(['cache', 'import', `type=local,src=${dir}`]), 'cache import');
  assert.match(imp.stdout, /cache mounts seeded: big/);
  const cDir = await mountDir(c, 'big');
  assert.equal(readdirSync(join(cDir, 'd')).length, FILES);
  assert.equal(readFileSync(join(cDir, 'marker'), 'utf8'), 'from-a\n');
  // No staging or swapped-out directory is left next to the mount's data.
  assert.deepEqual(readdirSync(join(cDir, '..')).filter((n) => n !== 'data' && n !== 'leases' && n !== 'lock'), []);
});

test('folder: a damaged layer blob streamed into the unpacker is refused by digest, and neither a layer nor the blob nor a temp file is left', async (t) => {
  const a = new Machine('a');
  t.after(() => a.cleanup());
  const bb = await busyboxContext();
  // The stamp makes a rerun's layer differ from A's (a rerun in the same second would otherwise
  // recreate the bad layer's diffId, and its directory, with good content).
  const files = { Dockerfile: 'FROM busybox\nRUN mkdir -p /data && seq 1 20000 > /data/numbers && cat /proc/sys/kernel/random/uuid > /data/stamp\nRUN wc -l /data/numbers > /count\n' };
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max`]);
  const index = await a.cacheLs(dir);
  const rec = index.records.find((x) => x.description.includes('seq 1 20000'))!;
  const diffId = rec.chain[rec.chain.length - 1]!;
  const digest = index.layers.find((l) => l.diffId === diffId)!.digest;
  const blob = join(dir, 'blobs', 'sha256', digest.slice(7));

  for (const damage of ['flipped', 'truncated', 'appended'] as const) {
    const copy = join(a.root, `cache-${damage}`);
    rmSync(copy, { recursive: true, force: true });
    spawnSync('cp', ['-a', dir, copy]);
    const target = join(copy, 'blobs', 'sha256', digest.slice(7));
    const bytes = readFileSync(blob);
    if (damage === 'flipped') bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    writeFileSync(target, damage === 'truncated' ? bytes.subarray(0, bytes.length - 100) : damage === 'appended' ? Buffer.concat([bytes, Buffer.from('junk')]) : bytes);

    const b = new Machine(`b-${damage}`);
    t.after(() => b.cleanup());
    // A new last step: it runs on the damaged layer, which must be unpacked (streamed) first.
    const ctx = b.context('ctx', { Dockerfile: files.Dockerfile + 'RUN cat /count\n' });
    const r = await b.build(ctx, [...bb, '--cache-from', `type=local,src=${copy}`, '-o', 'type=cacheonly']);
    assert.equal(r.code, 0, `${damage}: the build goes on\n${r.stderr}`);
    const w = r.warnings.find((x) => x.includes(digest));
    assert.ok(w, `${damage}: a warning names ${digest}:\n${r.warnings.join('\n')}`);
    assert.match(w, /does not match its digest/, damage);
    assert.ok(r.instructions.find((s) => s.name.includes('seq 1 20000'))?.miss !== undefined, `${damage}: the step on the bad layer reran\n${stepsSummary(r)}`);
    const { layerDirs, blobs } = b.storeContent();
    assert.ok(!layerDirs.includes(diffId.slice(7)), `${damage}: no layer directory for the bad layer`);
    assert.ok(!blobs.includes(digest.slice(7)), `${damage}: the bad blob was not kept`);
    assert.deepEqual(readdirSync(join(b.store, 'tmp')).filter((n) => /^(unpack|cachefetch)-/.test(n)), [], `${damage}: no temp leftovers`);
  }
});

test('folder: a layer unpacked as it streams in keeps its blob in the store for outputs', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const bb = await busyboxContext();
  const files = { Dockerfile: 'FROM busybox\nRUN echo one > /one\n' };
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max`]);
  const index = await a.cacheLs(dir);
  const layer = index.layers.find((l) => index.records.some((x) => x.description.includes('echo one') && x.chain.at(-1) === l.diffId))!;
  const out = join(b.root, 'out');
  await b.ok(b.context('ctx', { Dockerfile: files.Dockerfile + 'RUN cat /one > /two\n' }), [...bb, '--cache-from', `type=local,src=${dir}`, '-o', `type=local,dest=${out}`]);
  assert.equal(readFileSync(join(out, 'two'), 'utf8'), 'one\n');
  const { layerDirs, blobs } = b.storeContent();
  assert.ok(layerDirs.includes(layer.diffId.slice(7)), 'unpacked');
  assert.ok(blobs.includes(layer.digest.slice(7)), 'and its blob kept');
  const kept = readFileSync(join(b.store, 'blobs', 'sha256', layer.digest.slice(7)));
  assert.equal('sha256:' + createHash('sha256').update(kept).digest('hex'), layer.digest);
});

function tarball(dir: string, files: Record<string, string>): { path: string; digest: string } {
  const src = mkdtempSync(join(dir, 'src-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(src, name), content);
  const path = join(dir, `t-${Math.random().toString(36).slice(2)}.tar.gz`);
  const r = spawnSync('tar', ['-c', '-z', '-f', path, '-C', src, '.']);
  assert.equal(r.status, 0, String(r.stderr));
  return { path, digest: 'sha256:' + createHash('sha256').update(readFileSync(path)).digest('hex') };
}

const meta = (digest: string) => ({ digest, sharing: 'shared', created: 1, lastUsed: 2, mediaType: 'application/vnd.strata.cache.mount.v1.tar+gzip' });

test('seedCacheMount: a tarball whose bytes do not match the digest leaves the mount as it was; dead seeds leave nothing behind', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'strata-seed-'));
  const store = Store.open(join(tmp, 'store'));
  t.after(() => {
    store.close();
    rmSync(tmp, { recursive: true, force: true });
  });
  const lease = await acquireCacheMount(store, 'm', 'shared');
  writeFileSync(join(lease.dir, 'local'), 'mine');
  lease.release();

  // Bytes changed after the import checked them: the seed hashes again and keeps the mount.
  const good = tarball(tmp, { imported: 'theirs' });
  const other = tarball(tmp, { evil: 'x' });
  await assert.rejects(seedCacheMount(store, 'm', other.path, meta(good.digest)), /does not match its digest/);
  assert.deepEqual(readdirSync(join(cacheMountDir(store, 'm'), 'data')), ['local']);

  // A seed killed midway (its pid is gone) left staging and swapped-out directories: removed.
  const base = cacheMountDir(store, 'm');
  const dead = spawnSync('true').pid!;
  for (const n of [`import-${dead}-x`, `old-${dead}-y`]) mkdirSync(join(base, n, 'junk'), { recursive: true });
  assert.equal(await seedCacheMount(store, 'm', good.path, meta(good.digest)), true);
  assert.deepEqual(readdirSync(join(base, 'data')), ['imported']);
  assert.deepEqual(readdirSync(base).sort(), ['data', 'leases']);
  const row = store.db.prepare('SELECT last_used FROM cache_mounts WHERE id=?').get('m') as { last_used: number };
  assert.equal(row.last_used, 2);
  assert.ok(statSync(join(base, 'data', 'imported')).isFile());

  // tar exits at the end-of-archive marker without reading what follows (here 2 MiB of zeros, more
  // than a pipe holds): a complete archive all the same.
  const padded = join(tmp, 'padded.tar.gz');
  const src = mkdtempSync(join(tmp, 'padsrc-'));
  writeFileSync(join(src, 'after-padding'), 'ok');
  const raw = spawnSync('tar', ['-c', '-f', '-', '-C', src, '.'], { maxBuffer: 1 << 26 }).stdout;
  writeFileSync(padded, gzipSync(Buffer.concat([raw, Buffer.alloc(2 << 20)])));
  const paddedDigest = 'sha256:' + createHash('sha256').update(readFileSync(padded)).digest('hex');
  assert.equal(await seedCacheMount(store, 'm', padded, meta(paddedDigest)), true);
  assert.deepEqual(readdirSync(join(base, 'data')), ['after-padding']);

  // A tarball that is not a tar (right digest): refused, the mount stays.
  const junk = join(tmp, 'junk.tar.gz');
  writeFileSync(junk, 'not a tarball at all');
  const junkDigest = 'sha256:' + createHash('sha256').update(readFileSync(junk)).digest('hex');
  await assert.rejects(seedCacheMount(store, 'm', junk, meta(junkDigest)), /cannot unpack/);
  assert.deepEqual(readdirSync(join(base, 'data')), ['after-padding']);
  assert.ok(!readdirSync(base).some((n) => n.startsWith('import-')));
});

test('readThrough: the digest covers the whole input even when the reader stops early; the copy is complete', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'strata-readthrough-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const chunks = Array.from({ length: 40 }, (_, i) => Buffer.alloc(256 * 1024, i));
  const all = Buffer.concat(chunks);
  const copy = join(tmp, 'copy');
  const { feed, digest } = readThrough(async () => Readable.from(chunks), { copyTo: copy });
  let seen = 0;
  for await (const c of feed) {
    seen += (c as Buffer).length;
    if (seen > 1024 * 1024) break; // gives up: the async iterator destroys the feed
  }
  assert.equal(await digest, 'sha256:' + createHash('sha256').update(all).digest('hex'));
  assert.ok(existsSync(copy));
  assert.deepEqual(readFileSync(copy), all);

  // A failing input rejects the digest and fails the reader.
  const failing = readThrough(async () =>
    (async function* () {
      yield Buffer.from('abc');
      throw new Error('disk on fire');
    })(),
  );
  await assert.rejects(failing.digest, /disk on fire/);
  await assert.rejects(async () => {
    for await (const _ of failing.feed) void _;
  });
});

test('two seeds of one mount started together (two --cache-from): the newer tarball wins, whichever comes first', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'strata-seed2-'));
  const store = Store.open(join(tmp, 'store'));
  t.after(() => {
    store.close();
    rmSync(tmp, { recursive: true, force: true });
  });
  const older = tarball(tmp, { older: '1' });
  const newer = tarball(tmp, { newer: '2' });
  const open = (path: string) => async () => createReadStream(path);
  const warnings: string[] = [];
  const warn = (m: string) => warnings.push(m);
  const at = (digest: string, lastUsed: number) => ({ ...meta(digest), lastUsed });

  // Older first: the newer one is queued behind it and ends up in place.
  assert.equal(startCacheMountSeed(store, 'x', open(older.path), at(older.digest, 10), warn), true);
  assert.equal(startCacheMountSeed(store, 'x', open(newer.path), at(newer.digest, 20), warn), true);
  assert.equal(await cacheMountSeeded(store, 'x'), true);
  assert.deepEqual(readdirSync(join(cacheMountDir(store, 'x'), 'data')), ['newer']);
  assert.equal((store.db.prepare('SELECT last_used FROM cache_mounts WHERE id=?').get('x') as { last_used: number }).last_used, 20);

  // Newer first: the older one is not started.
  assert.equal(startCacheMountSeed(store, 'y', open(newer.path), at(newer.digest, 20), warn), true);
  assert.equal(startCacheMountSeed(store, 'y', open(older.path), at(older.digest, 10), warn), false);
  await cacheMountSeeded(store, 'y');
  assert.deepEqual(readdirSync(join(cacheMountDir(store, 'y'), 'data')), ['newer']);
  assert.deepEqual(warnings, []);
});
