// The build cache seen from outside: an unchanged rebuild is CACHED everywhere and starts no
// container; a changed file reruns only the COPY that reads it and the steps after it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, busyboxArgs, expectOk, instructionSteps, parseProgress, printedDigest } from './harness.js';

const DOCKERFILE = `FROM busybox AS tool
RUN --mount=type=cache,target=/runs,id=e2e-runs echo tool >> /runs/log && echo tool > /tool.txt

FROM busybox
COPY a.txt /a.txt
RUN --mount=type=cache,target=/runs,id=e2e-runs echo after-a >> /runs/log && cat /a.txt > /a-copy
COPY b.txt /b.txt
RUN --mount=type=cache,target=/runs,id=e2e-runs echo after-b >> /runs/log && cat /b.txt > /b-copy
COPY --from=tool /tool.txt /tool.txt
ENV DONE=1
WORKDIR /work
`;

/** Every line appended to the shared cache mount so far (one per RUN that really ran). */
async function runsLog(env: StrataEnv, bb: string[]): Promise<string[]> {
  const ctx = env.context(`probe-${Math.random().toString(16).slice(2)}`, {
    Dockerfile: 'FROM busybox\nRUN --mount=type=cache,target=/runs,id=e2e-runs cat /runs/log > /log-copy\n',
  });
  const out = join(env.root, `probe-out-${Math.random().toString(16).slice(2)}`);
  expectOk(await env.build(ctx, [...bb, '--no-cache', '-o', `type=local,dest=${out}`]), 'probe build');
  return readFileSync(join(out, 'log-copy'), 'utf8').trim().split('\n');
}

const ran = (stderr: string) => instructionSteps(parseProgress(stderr)).filter((s) => !s.cached).map((s) => s.name);

test('unchanged rebuild is fully CACHED; a changed COPY source reruns only that COPY and what follows', async (t) => {
  const env = new StrataEnv('strata-e2e-cache-');
  t.after(() => env.cleanup());
  const bb = await busyboxArgs();
  const ctx = env.context('ctx', { Dockerfile: DOCKERFILE, 'a.txt': 'a1\n', 'b.txt': 'b1\n' });
  const out = join(env.root, 'out');
  const build = (dest: string) => env.build(ctx, [...bb, '-o', `type=local,dest=${dest}`]);

  const first = expectOk(await build(out), 'first build');
  const firstSteps = instructionSteps(parseProgress(first.stderr));
  assert.ok(firstSteps.length >= 6, first.stderr);
  assert.ok(firstSteps.every((s) => !s.cached && s.done), `first build runs everything:\n${first.stderr}`);
  assert.deepEqual((await runsLog(env, bb)).sort(), ['after-a', 'after-b', 'tool']);

  // Nothing changed: every step CACHED, no container started (the cache-mount log is unchanged),
  // and the same filesystem comes out.
  const second = expectOk(await build(join(env.root, 'out2')), 'second build');
  const secondSteps = instructionSteps(parseProgress(second.stderr));
  assert.deepEqual(secondSteps.map((s) => s.name), firstSteps.map((s) => s.name));
  assert.ok(secondSteps.every((s) => s.cached && !s.miss), `rebuild must be fully cached:\n${second.stderr}`);
  assert.equal(secondSteps.length, (second.stderr.match(/^#\d+ CACHED$/gm) ?? []).filter(Boolean).length);
  assert.deepEqual((await runsLog(env, bb)).sort(), ['after-a', 'after-b', 'tool']);
  assert.equal(readFileSync(join(env.root, 'out2', 'b-copy'), 'utf8'), 'b1\n');

  // Change b.txt: COPY b.txt and the RUN after it rerun; COPY a, its RUN and the tool stage stay cached.
  writeFileSync(join(ctx, 'b.txt'), 'b2\n');
  const third = expectOk(await build(join(env.root, 'out3')), 'build after changing b.txt');
  const rerun = ran(third.stderr);
  assert.ok(rerun.some((n) => n.includes('COPY b.txt /b.txt')), third.stderr);
  assert.ok(rerun.some((n) => n.includes('echo after-b')), third.stderr);
  for (const n of rerun) assert.ok(!/COPY a\.txt|echo after-a|echo tool/.test(n), `${n} should be cached:\n${third.stderr}`);
  assert.equal(readFileSync(join(env.root, 'out3', 'b-copy'), 'utf8'), 'b2\n');
  assert.equal(readFileSync(join(env.root, 'out3', 'a-copy'), 'utf8'), 'a1\n');
  assert.deepEqual((await runsLog(env, bb)).sort(), ['after-a', 'after-b', 'after-b', 'tool']);

  // Touching a file without changing its content keeps everything cached (content, not mtime).
  writeFileSync(join(ctx, 'a.txt'), 'a1\n');
  const fourth = expectOk(await build(join(env.root, 'out4')), 'build after rewriting a.txt unchanged');
  assert.deepEqual(ran(fourth.stderr), []);

  // Change a.txt: its COPY and everything after it in the stage rerun; the tool stage does not.
  writeFileSync(join(ctx, 'a.txt'), 'a2\n');
  const fifth = expectOk(await build(join(env.root, 'out5')), 'build after changing a.txt');
  const rerun5 = ran(fifth.stderr);
  assert.ok(rerun5.some((n) => n.includes('COPY a.txt /a.txt')), fifth.stderr);
  assert.ok(rerun5.some((n) => n.includes('echo after-a')), fifth.stderr);
  assert.ok(!rerun5.some((n) => n.includes('echo tool')), fifth.stderr);
  assert.equal(readFileSync(join(env.root, 'out5', 'a-copy'), 'utf8'), 'a2\n');
  assert.deepEqual((await runsLog(env, bb)).sort(), ['after-a', 'after-a', 'after-b', 'after-b', 'after-b', 'tool']);
});

test('an image built from cache has the digest of a fresh build with the same SOURCE_DATE_EPOCH', async (t) => {
  const env = new StrataEnv('strata-e2e-cache-digest-');
  t.after(() => env.cleanup());
  const bb = await busyboxArgs();
  const ctx = env.context('ctx', { Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'b.txt': 'b\n' });
  const args = [...bb, '--build-arg', 'SOURCE_DATE_EPOCH=1600000000'];
  const first = printedDigest(expectOk(await env.build(ctx, args), 'first'));
  const cached = expectOk(await env.build(ctx, args), 'cached');
  assert.ok(instructionSteps(parseProgress(cached.stderr)).every((s) => s.cached));
  assert.equal(printedDigest(cached), first);
});
