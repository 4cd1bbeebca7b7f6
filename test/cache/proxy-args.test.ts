// Proxy build args (HTTP_PROXY and friends) reach RUN's environment without an ARG, but never
// its cache key: a CI runner behind a different proxy fetches the same bytes (BuildKit does the same).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cacheEnv, misses, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
before(async () => {
  t = await cacheEnv('proxy');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

test('a proxy build arg is in the step environment but not in its key', async () => {
  const ctx = t.env.context('proxy', {
    Dockerfile: 'FROM busybox\nRUN echo "proxy=${HTTP_PROXY:-none}" > /proxy.txt\n',
  });
  await t.ok(ctx);
  const again = await t.ok(ctx, ['--build-arg', 'HTTP_PROXY=http://127.0.0.1:3128']);
  assert.equal(misses(again.instructions), '', 'changing the proxy must not rerun anything');

  const out = join(t.env.root, 'out');
  await t.ok(ctx, ['--no-cache', '--build-arg', 'HTTP_PROXY=http://127.0.0.1:3128', '-o', `type=local,dest=${out}`]);
  assert.equal(readFileSync(join(out, 'proxy.txt'), 'utf8'), 'proxy=http://127.0.0.1:3128\n');
});
