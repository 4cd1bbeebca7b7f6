// Two builds at once into one store: both succeed with the same image, the store stays consistent
// and a third build hits every step.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { cacheEnv, expectOk, misses, mountsUnder, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
before(async () => {
  t = await cacheEnv('concurrent');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

const SDE = { SOURCE_DATE_EPOCH: '1700000000' };

test('two concurrent builds of one Dockerfile into one store agree, and the store stays sound', async () => {
  const ctx = t.env.context('ctx', {
    Dockerfile: `FROM busybox AS deps
WORKDIR /usr/src/app
COPY package.json ./
RUN mkdir -p node_modules/dep && echo dep > node_modules/dep/index.js && sleep 0.3
RUN --mount=type=cache,target=/cache,sharing=locked echo run >> /cache/log

FROM busybox AS assets
COPY assets/ /assets/
RUN cat /assets/* > /bundle && sleep 0.2

FROM busybox
WORKDIR /usr/src/app
COPY --from=deps /usr/src/app/node_modules ./node_modules
COPY --from=assets /bundle ./bundle
COPY package.json ./
RUN ls -R . > /manifest
`,
    'package.json': '{"name":"app"}\n',
    'assets/a.css': 'a{}\n',
    'assets/b.css': 'b{}\n',
  });
  const [a, b] = await Promise.all([t.build(ctx, [], SDE), t.build(ctx, [], SDE)]);
  expectOk(a, 'first concurrent build');
  expectOk(b, 'second concurrent build');
  assert.match(a.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(a.digest, b.digest, 'both builds produce the same image');

  const doctor = expectOk(await t.env.strata(['doctor']), 'strata doctor');
  assert.match(doctor.stdout, /store is consistent/);
  assert.doesNotMatch(doctor.stdout, /^problem:/m);

  const third = await t.ok(ctx, [], SDE);
  assert.equal(misses(third.instructions), '', 'a third build hits every step');
  assert.equal(third.digest, a.digest);
  const ex = await t.explain();
  assert.ok(ex.steps.every((s) => s.cached));
  assert.deepEqual(mountsUnder(join(t.env.store)), [], 'no overlay mount is left in the store');
});

test('concurrent builds that differ only in a build arg share the common steps', async () => {
  const ctx = t.env.context('ctx-args', {
    Dockerfile: `FROM busybox
COPY data.txt /data.txt
RUN sleep 0.3 && wc -c /data.txt > /size
ARG FLAVOR=plain
RUN echo "$FLAVOR" > /flavor
`,
    'data.txt': 'data\n',
  });
  const builds = await Promise.all(['a', 'b', 'c'].map((f) => t.build(ctx, ['--build-arg', `FLAVOR=${f}`], SDE)));
  for (const r of builds) expectOk(r, 'concurrent build');
  assert.equal(new Set(builds.map((r) => r.digest)).size, 3);
  for (const f of ['a', 'b', 'c']) {
    const r = await t.ok(ctx, ['--build-arg', `FLAVOR=${f}`], SDE);
    assert.equal(misses(r.instructions), '', `FLAVOR=${f} is fully cached`);
    assert.equal(r.digest, builds[['a', 'b', 'c'].indexOf(f)]!.digest);
  }
  expectOk(await t.env.strata(['doctor']), 'strata doctor');
});
