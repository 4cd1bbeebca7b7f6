// The field report: stages made of `WORKDIR /usr/src/app`, a RUN and `COPY package.json ./` in
// various orders (several stages share identical prefixes). A rebuild with nothing changed must hit
// every step of every stage and start no container at all.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheEnv, cacheMountLines, misses, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
before(async () => {
  t = await cacheEnv('field');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

// The RUN appends a line to a cache mount each time a container really runs; `sleep 1` makes two
// runs of the same step produce different layers (no SOURCE_DATE_EPOCH), as in the field.
const RUN = 'RUN --mount=type=cache,target=/cache echo "$(date +%s%N)" >> /cache/log && sleep 1 && touch /built';

const DOCKERFILE = `FROM busybox AS deps
WORKDIR /usr/src/app
${RUN}
COPY package.json ./

FROM busybox AS deps2
WORKDIR /usr/src/app
${RUN}
COPY package.json ./

FROM busybox AS copy-first
COPY package.json ./
WORKDIR /usr/src/app
${RUN}

FROM busybox AS run-first
${RUN}
WORKDIR /usr/src/app
COPY package.json ./

FROM busybox AS final
WORKDIR /usr/src/app
COPY package.json ./
${RUN}
COPY --from=deps /usr/src/app/package.json /deps.json
COPY --from=deps2 /built /built2
COPY --from=copy-first /usr/src/app /cf
COPY --from=run-first /built /rf
`;

test('a rebuild with nothing changed hits every step of every stage and runs no container', async () => {
  const ctx = t.env.context('ctx', { 'package.json': '{"name":"app","version":"1.0.0"}\n', Dockerfile: DOCKERFILE });
  for (const jobs of ['1', '4']) {
    rmSync(t.env.store, { recursive: true, force: true });
    const first = await t.ok(ctx, ['--jobs', jobs]);
    assert.equal(first.instructions.length, 19, first.stderr);
    const ran = cacheMountLines(t.env.store);
    assert.ok(ran >= 1, 'the first build ran the RUN steps');

    for (let i = 0; i < 2; i++) {
      const again = await t.ok(ctx, ['--jobs', jobs]);
      assert.equal(again.instructions.length, 19);
      assert.deepEqual(misses(again.instructions), '', `jobs=${jobs} rebuild ${i + 1}: every step must be CACHED`);
      assert.equal(cacheMountLines(t.env.store), ran, 'no RUN container started on the rebuild');
      const ex = await t.explain();
      assert.equal(ex.steps.length, 19);
      for (const s of ex.steps) assert.equal(s.cached, true, `explain: ${s.step} ${s.instruction} is cached (${s.reason})`);
    }
  }
});

test('the same stages built one target at a time share their cache', async () => {
  const ctx = t.env.context('ctx-targets', { 'package.json': '{"name":"app"}\n', Dockerfile: DOCKERFILE });
  rmSync(t.env.store, { recursive: true, force: true });
  for (const target of ['deps', 'deps2', 'copy-first', 'run-first']) await t.ok(ctx, ['--target', target]);
  const ran = cacheMountLines(t.env.store);
  const full = await t.ok(ctx);
  // deps and deps2 are the same steps: whichever ran first serves both; final's own steps are new.
  const finalOnly = full.instructions.filter((s) => s.name.startsWith('[final '));
  for (const s of full.instructions.filter((x) => !x.name.startsWith('[final '))) assert.ok(s.cached, `${s.name}: ${s.miss}`);
  assert.ok(finalOnly.some((s) => !s.cached));
  const afterFull = cacheMountLines(t.env.store);
  assert.ok(afterFull > ran);
  const again = await t.ok(ctx);
  assert.equal(misses(again.instructions), '');
  assert.equal(cacheMountLines(t.env.store), afterFull);
  writeFileSync(join(ctx, 'package.json'), '{"name":"app","version":"2"}\n');
  const changed = await t.ok(ctx);
  // deps2 repeats deps step for step: one of the two runs, the other shares its fresh result.
  const copies = changed.instructions.filter((x) => x.name.includes('COPY package.json'));
  for (const s of copies.filter((x) => !/^\[deps2? /.test(x.name))) assert.equal(s.miss, 'package.json content changed', s.name);
  const pair = copies.filter((x) => /^\[deps2? /.test(x.name));
  assert.equal(pair.length, 2);
  const ranOne = pair.find((x) => !x.cached);
  const shared = pair.find((x) => x.cached);
  assert.ok(ranOne && shared, pair.map((x) => x.name).join(', '));
  assert.equal(ranOne.miss, 'package.json content changed');
  assert.deepEqual(shared.notes, [`same step as ${ranOne.name}, which ran in this build`]);
});
