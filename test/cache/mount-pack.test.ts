// An unchanged cache mount packs to the same bytes every time, so re-exporting a cache does not
// upload it again (gzip must not stamp the current time into its header).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/cache/store.js';
import { acquireCacheMount, packCacheMount } from '../../src/cache/cache-mounts.js';

test('packing an unchanged cache mount twice gives the same digest, gzip and zstd', async () => {
  const root = mkdtempSync(join(tmpdir(), 'strata-pack-'));
  const store = Store.open(root);
  try {
    const lease = await acquireCacheMount(store, 'objs', 'shared');
    writeFileSync(join(lease.dir, 'a.o'), 'object code');
    lease.release();
    for (const compression of ['gzip', 'zstd'] as const) {
      const first = await packCacheMount(store, 'objs', compression);
      await new Promise((r) => setTimeout(r, 1100));
      const second = await packCacheMount(store, 'objs', compression);
      assert.equal(second.digest, first.digest, compression);
    }
  } finally {
    store.close();
    rmSync(root, { recursive: true, force: true });
  }
});
