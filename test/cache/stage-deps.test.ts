// How changes travel between steps and stages: COPY --from keys on the selected files only, a RUN
// that reruns to identical output leaves its dependents cached (early cutoff), and build args bust
// exactly the steps that see them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheEnv, misses, step, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
before(async () => {
  t = await cacheEnv('stages');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

const SDE = { SOURCE_DATE_EPOCH: '1700000000' };

test('COPY --from=stage of one file hits after an unrelated change elsewhere in that stage', async () => {
  const ctx = t.env.context('from', {
    Dockerfile: `FROM busybox AS build
COPY a.txt /src/a.txt
RUN tr a-z A-Z < /src/a.txt > /out-a
COPY other.txt /src/other.txt
RUN cat /src/other.txt > /out-other

FROM busybox
COPY --from=build /out-a /a
RUN cat /a > /a-again
`,
    'a.txt': 'alpha\n',
    'other.txt': 'one\n',
  });
  await t.ok(ctx);
  writeFileSync(join(ctx, 'other.txt'), 'two\n');
  const r = await t.ok(ctx);
  assert.equal(step(r.instructions, 'COPY other.txt').miss, 'other.txt content changed');
  assert.match(step(r.instructions, 'RUN cat /src/other.txt').miss ?? '', /^parent step \[build 4\/5\] COPY other\.txt/);
  const from = step(r.instructions, 'COPY --from=build');
  assert.ok(from.cached, `COPY --from hits: ${from.miss}`);
  assert.deepEqual(from.notes, ['[build 5/5] RUN cat /src/other.txt > /out-other reran; the files this step reads from it are unchanged']);
  assert.ok(step(r.instructions, 'RUN cat /a').cached);
  const ex = await t.explain();
  assert.equal(step(ex.steps, 'COPY --from=build').cached, true);
  assert.match(step(ex.steps, 'COPY --from=build').note, /files this step reads from it are unchanged/);

  // The selected file changing does bust it, naming the file.
  writeFileSync(join(ctx, 'a.txt'), 'beta\n');
  const r2 = await t.ok(ctx);
  assert.equal(step(r2.instructions, 'COPY --from=build').miss, 'out-a content changed');
});

test('early cutoff: a RUN reruns to identical output and its dependents stay cached', async () => {
  const ctx = t.env.context('cutoff', {
    Dockerfile: `FROM busybox AS gen
ARG FLAVOR=plain
RUN echo "generating ($FLAVOR)" && mkdir -p /gen && echo constant > /gen/data.txt

FROM gen AS child
RUN cat /gen/data.txt > /child.txt

FROM busybox
COPY --from=gen /gen/data.txt /data.txt
COPY --from=child /child.txt /child.txt
RUN cat /data.txt /child.txt > /both
`,
  });
  await t.ok(ctx, [], SDE);
  const r = await t.ok(ctx, ['--build-arg', 'FLAVOR=spicy'], SDE);
  const gen = step(r.instructions, '[gen 3/3]');
  assert.equal(gen.miss, 'build arg FLAVOR changed (plain -> spicy)');
  const child = step(r.instructions, '[child 2/2]');
  assert.ok(child.cached, `the next stage's step is cached: ${child.miss}`);
  const cutoff = '[gen 3/3] RUN echo "generating ($FLAVOR)" && mkdir -p /gen && echo constant > /gen/data.txt reran with identical output (early cutoff)';
  assert.deepEqual(child.notes, [cutoff]);
  const copy = step(r.instructions, 'COPY --from=gen');
  assert.ok(copy.cached);
  assert.deepEqual(copy.notes, [cutoff]);
  assert.ok(step(r.instructions, 'COPY --from=child').cached);
  assert.ok(step(r.instructions, 'RUN cat /data.txt').cached);

  const ex = await t.explain();
  assert.equal(step(ex.steps, '[child 2/2]').note, cutoff);
  assert.equal(step(ex.steps, '[child 2/2]').cached, true);
  assert.equal(step(ex.steps, 'COPY --from=gen').note, cutoff);
  assert.equal(step(ex.steps, '[gen 3/3]').cached, false);
  assert.equal(step(ex.steps, '[gen 3/3]').reason, 'build arg FLAVOR changed (plain -> spicy)');

  // Results made with SOURCE_DATE_EPOCH have clamped times: a build without it cannot reuse them.
  const r2 = await t.ok(ctx, ['--build-arg', 'FLAVOR=sweet']);
  assert.equal(step(r2.instructions, '[gen 3/3]').miss, 'build arg FLAVOR changed (spicy -> sweet); SOURCE_DATE_EPOCH changed (1700000000 -> <unset>)');
  assert.equal(step(r2.instructions, '[child 2/2]').miss, 'SOURCE_DATE_EPOCH changed (1700000000 -> <unset>)');
  // And back: the results made with it are still there.
  const r3 = await t.ok(ctx, ['--build-arg', 'FLAVOR=spicy'], SDE);
  assert.equal(misses(r3.instructions), '');
});

test('build args: declared but unused by a COPY, in scope of a RUN, and meta ARGs used only in FROM', async () => {
  const ctx = t.env.context('args', {
    Dockerfile: `ARG BASE=bb1
FROM \${BASE}
ARG VERSION=1
ARG UNRELATED=x
COPY app.txt /app.txt
RUN echo "version $VERSION" > /version
COPY later.txt /later.txt
`,
    'app.txt': 'app\n',
    'later.txt': 'later\n',
  });
  const layout = t.busybox[1]!.replace(/^busybox=/, '');
  const bases = ['--build-context', `bb1=${layout}`, '--build-context', `bb2=${layout}`];
  const first = await t.ok(ctx, bases, SDE);
  assert.equal(first.instructions.length, 3);

  // COPY app.txt sees VERSION and UNRELATED declared but uses neither.
  let r = await t.ok(ctx, [...bases, '--build-arg', 'VERSION=2'], SDE);
  assert.ok(step(r.instructions, 'COPY app.txt').cached, 'an ARG the COPY does not reference does not bust it');
  assert.equal(step(r.instructions, 'RUN echo').miss, 'build arg VERSION changed (1 -> 2)');
  assert.match(step(r.instructions, 'COPY later.txt').miss ?? '', /^parent step .*RUN echo .* changed$/);
  let ex = await t.explain();
  assert.equal(step(ex.steps, 'RUN echo').reason, 'build arg VERSION changed (1 -> 2)');

  // Every ARG in scope is in RUN's environment (as in Docker), so UNRELATED busts the RUN too.
  r = await t.ok(ctx, [...bases, '--build-arg', 'VERSION=2', '--build-arg', 'UNRELATED=y'], SDE);
  assert.ok(step(r.instructions, 'COPY app.txt').cached);
  assert.equal(step(r.instructions, 'RUN echo').miss, 'build arg UNRELATED changed (x -> y)');
  // ...but its output is identical, so the step after it is cut off.
  assert.ok(step(r.instructions, 'COPY later.txt').cached);
  assert.match(step(r.instructions, 'COPY later.txt').notes.join(''), /reran with identical output \(early cutoff\)/);

  // A meta ARG used only in FROM: another name for the same image busts nothing.
  r = await t.ok(ctx, [...bases, '--build-arg', 'VERSION=2', '--build-arg', 'UNRELATED=y', '--build-arg', 'BASE=bb2'], SDE);
  assert.equal(misses(r.instructions), '', 'the meta ARG is not in any step\'s scope');
  ex = await t.explain();
  assert.ok(ex.steps.every((s) => s.cached));
  assert.equal(ex.build.args.BASE, 'bb2');
});

test('SOURCE_DATE_EPOCH is part of every key: a store warmed without it still builds the reproducible image', async (tc) => {
  const files = { Dockerfile: 'FROM busybox\nWORKDIR /app\nCOPY a.txt ./\nRUN echo made > made.txt\n', 'a.txt': 'a\n' };
  const ctx = t.env.context('sde', files);
  await t.ok(ctx);
  const withSde = await t.ok(ctx, [], SDE);
  for (const s of withSde.instructions) assert.equal(s.miss, 'SOURCE_DATE_EPOCH changed (<unset> -> 1700000000)', s.name);
  const fresh = await cacheEnv('stages-fresh');
  tc.after(() => rmSync(fresh.env.root, { recursive: true, force: true }));
  const clean = await fresh.ok(fresh.env.context('sde', files), [], SDE);
  assert.equal(withSde.digest, clean.digest, 'same image as a clean store gives');
  const again = await t.ok(ctx, [], SDE);
  assert.equal(misses(again.instructions), '');
  assert.equal(again.digest, clean.digest);
});
