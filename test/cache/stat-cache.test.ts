// The persisted context stat cache: entries survive between builds, except digests of files that
// changed moments before they were read (a same-size edit in the same timestamp tick is invisible).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/cache/store.js';
import { PersistentStatCache, RACY_MS } from '../../src/cache/stat-cache-store.js';

const root = mkdtempSync(join(tmpdir(), 'strata-statcache-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('settled files are remembered across builds; files changed just before reading are not', () => {
  const store = Store.open(join(root, 'store'));
  try {
    const ctx = join(root, 'ctx');
    const first = new PersistentStatCache(store, [ctx]);
    const old = Date.now() - 10_000;
    first.set(join(ctx, 'settled.txt'), { ino: 1, size: 3, mtimeMs: old, ctimeMs: old, digest: 'sha256:aa' });
    const fresh = Date.now();
    first.set(join(ctx, 'fresh.txt'), { ino: 2, size: 3, mtimeMs: fresh, ctimeMs: fresh, digest: 'sha256:bb' });
    // An mtime in the future (touch -d) says nothing about races: ctime decides.
    first.set(join(ctx, 'future.txt'), { ino: 3, size: 3, mtimeMs: fresh + 3600_000, ctimeMs: old, digest: 'sha256:cc' });
    assert.equal(first.get(join(ctx, 'fresh.txt'))?.digest, 'sha256:bb', 'this build still uses the digest');
    first.flush();

    const next = new PersistentStatCache(store, [ctx]);
    assert.equal(next.get(join(ctx, 'settled.txt'))?.digest, 'sha256:aa');
    assert.equal(next.get(join(ctx, 'future.txt'))?.digest, 'sha256:cc');
    assert.equal(next.get(join(ctx, 'fresh.txt')), undefined, 'a racily clean entry is hashed again');
    // Another context's entries are not loaded.
    assert.equal(new PersistentStatCache(store, [join(root, 'other')]).get(join(ctx, 'settled.txt')), undefined);

    // Once settled, the same file is persisted again.
    next.set(join(ctx, 'fresh.txt'), { ino: 2, size: 3, mtimeMs: fresh, ctimeMs: Date.now() - RACY_MS - 1, digest: 'sha256:bb' });
    next.flush();
    assert.equal(new PersistentStatCache(store, [ctx]).get(join(ctx, 'fresh.txt'))?.digest, 'sha256:bb');
  } finally {
    store.close();
  }
});
