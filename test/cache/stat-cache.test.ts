// The persisted context stat cache: entries survive between builds, except digests of files that
// changed moments before they were read (a same-size edit in the same timestamp tick is invisible).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/cache/store.js';
import { PersistentStatCache, RACY_MS, sweepStatCache } from '../../src/cache/stat-cache-store.js';

const root = mkdtempSync(join(tmpdir(), 'strata-statcache-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('settled files are remembered across builds; files changed just before reading are not', () => {
  const store = Store.open(join(root, 'store'));
  try {
    const ctx = join(root, 'ctx');
    const first = new PersistentStatCache(store);
    const old = Date.now() - 10_000;
    first.set(join(ctx, 'settled.txt'), { ino: 1, size: 3, mtimeMs: old, ctimeMs: old, digest: 'sha256:aa' });
    const fresh = Date.now();
    first.set(join(ctx, 'fresh.txt'), { ino: 2, size: 3, mtimeMs: fresh, ctimeMs: fresh, digest: 'sha256:bb' });
    // An mtime in the future (touch -d) says nothing about races: ctime decides.
    first.set(join(ctx, 'future.txt'), { ino: 3, size: 3, mtimeMs: fresh + 3600_000, ctimeMs: old, digest: 'sha256:cc' });
    assert.equal(first.get(join(ctx, 'fresh.txt'))?.digest, 'sha256:bb', 'this build still uses the digest');
    first.flush();

    const next = new PersistentStatCache(store);
    assert.equal(next.get(join(ctx, 'settled.txt'))?.digest, 'sha256:aa');
    assert.equal(next.get(join(ctx, 'future.txt'))?.digest, 'sha256:cc');
    assert.equal(next.get(join(ctx, 'fresh.txt')), undefined, 'a racily clean entry is hashed again');
    assert.equal(next.get(join(root, 'other', 'settled.txt')), undefined, 'entries are per path');

    // Once settled, the same file is persisted again.
    next.set(join(ctx, 'fresh.txt'), { ino: 2, size: 3, mtimeMs: fresh, ctimeMs: Date.now() - RACY_MS - 1, digest: 'sha256:bb' });
    next.flush();
    assert.equal(new PersistentStatCache(store).get(join(ctx, 'fresh.txt'))?.digest, 'sha256:bb');
  } finally {
    store.close();
  }
});

test('entries are kept one row per directory; an older store\'s per-file rows are read and moved', () => {
  const store = Store.open(join(root, 'store-dirs'));
  try {
    const ctx = join(root, 'ctx-dirs');
    const old = Date.now() - 10_000;
    // As the per-file table of earlier versions held them.
    const legacy = store.db.prepare('INSERT INTO stat_cache(path,ino,size,mtime,ctime,digest) VALUES (?,?,?,?,?,?)');
    legacy.run(join(ctx, 'a.txt'), 1, 1, old, old, 'sha256:a1');
    legacy.run(join(ctx, 'sub', 'b.txt'), 2, 1, old, old, 'sha256:b1');
    const first = new PersistentStatCache(store);
    assert.deepEqual(first.get(join(ctx, 'a.txt')), { ino: 1, size: 1, mtimeMs: old, ctimeMs: old, digest: 'sha256:a1' });
    assert.equal(first.get(join(ctx, 'sub', 'b.txt'))?.digest, 'sha256:b1');
    first.set(join(ctx, 'sub', 'c.txt'), { ino: 3, size: 1, mtimeMs: old, ctimeMs: old, digest: 'sha256:c1' });
    // Read at once after a change: this build only, whatever its ctime says.
    first.set(join(ctx, 'd.txt'), { ino: 4, size: 1, mtimeMs: old, ctimeMs: old, digest: 'sha256:d1', settled: false });
    assert.equal(first.get(join(ctx, 'd.txt'))?.settled, false);
    first.flush();

    const dirs = store.db.prepare('SELECT dir FROM stat_dirs ORDER BY dir').pluck().all();
    assert.deepEqual(dirs, [ctx, join(ctx, 'sub')], 'one row per directory, the old rows moved over');
    store.db.prepare('DELETE FROM stat_cache').run();
    const next = new PersistentStatCache(store);
    assert.equal(next.get(join(ctx, 'a.txt'))?.digest, 'sha256:a1');
    assert.equal(next.get(join(ctx, 'sub', 'b.txt'))?.digest, 'sha256:b1');
    assert.equal(next.get(join(ctx, 'sub', 'c.txt'))?.digest, 'sha256:c1');
    assert.equal(next.get(join(ctx, 'd.txt')), undefined, 'an unsettled entry is not kept');

    // A later entry of a directory replaces the earlier one and keeps the others.
    next.set(join(ctx, 'sub', 'b.txt'), { ino: 2, size: 2, mtimeMs: old + 1, ctimeMs: old + 1, digest: 'sha256:b2' });
    next.flush();
    const third = new PersistentStatCache(store);
    assert.equal(third.get(join(ctx, 'sub', 'b.txt'))?.digest, 'sha256:b2');
    assert.equal(third.get(join(ctx, 'sub', 'c.txt'))?.digest, 'sha256:c1');
  } finally {
    store.close();
  }
});

test('selection records survive between builds', () => {
  const store = Store.open(join(root, 'store-sel'));
  try {
    const first = new PersistentStatCache(store);
    assert.equal(first.selection('k1'), undefined);
    first.setSelection('k1', { fingerprint: 'f1', digest: 'sha256:d1' });
    assert.deepEqual(first.selection('k1'), { fingerprint: 'f1', digest: 'sha256:d1' });
    first.flush();
    const next = new PersistentStatCache(store);
    assert.deepEqual(next.selection('k1'), { fingerprint: 'f1', digest: 'sha256:d1' });
    next.setSelection('k1', { fingerprint: 'f2', digest: 'sha256:d2' });
    next.flush();
    assert.deepEqual(new PersistentStatCache(store).selection('k1'), { fingerprint: 'f2', digest: 'sha256:d2' });
  } finally {
    store.close();
  }
});

test('prune\'s sweep drops the entries of files and directories that are gone, and nothing else', () => {
  const store = Store.open(join(root, 'store-sweep'));
  try {
    const ctx = join(root, 'ctx-sweep');
    mkdirSync(join(ctx, 'kept'), { recursive: true });
    mkdirSync(join(ctx, 'gone'), { recursive: true });
    for (const f of ['kept/a.txt', 'kept/b.txt', 'gone/c.txt', 'top.txt']) writeFileSync(join(ctx, f), 'x');
    const old = Date.now() - 10_000;
    const cache = new PersistentStatCache(store);
    let ino = 1;
    for (const f of ['kept/a.txt', 'kept/b.txt', 'gone/c.txt', 'top.txt']) cache.set(join(ctx, f), { ino: ino++, size: 1, mtimeMs: old, ctimeMs: old, digest: `sha256:${f}` });
    cache.flush();
    store.db.prepare('INSERT INTO stat_cache(path,ino,size,mtime,ctime,digest) VALUES (?,?,?,?,?,?)').run(join(ctx, 'legacy.txt'), 9, 1, old, old, 'sha256:l');
    rmSync(join(ctx, 'gone'), { recursive: true });
    rmSync(join(ctx, 'kept/b.txt'));

    assert.equal(sweepStatCache(store), 2, 'one row removed, one rewritten');
    const rows = store.db.prepare('SELECT dir FROM stat_dirs ORDER BY dir').pluck().all();
    assert.deepEqual(rows, [ctx, join(ctx, 'kept')]);
    const after = new PersistentStatCache(store);
    assert.equal(after.get(join(ctx, 'kept/a.txt'))?.digest, 'sha256:kept/a.txt');
    assert.equal(after.get(join(ctx, 'top.txt'))?.digest, 'sha256:top.txt');
    assert.equal(after.get(join(ctx, 'kept/b.txt')), undefined);
    assert.equal(store.db.prepare('SELECT COUNT(*) FROM stat_cache').pluck().get(), 0);
    assert.equal(sweepStatCache(store), 0, 'nothing left to sweep');
  } finally {
    store.close();
  }
});
