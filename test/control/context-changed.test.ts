// A context file written while the step that reads it runs: the step's key was computed from the
// old content, so keeping its result would serve the wrong files to every later build. The build
// fails naming the file, nothing is cached, and the next build runs the step on the new content.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlEnv, expectOk, misses, step, waitForFile } from './support.js';

const waitIn = (file: string) => `i=0; while [ ! -e ${file} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done`;

test('a context file changed while a step reads it fails the step and leaves no record', async (t) => {
  const c = await controlEnv('ctx-changed');
  t.after(() => c.env.cleanup());
  const dir = c.env.context('ctx', {
    Dockerfile: `FROM busybox
RUN --mount=type=bind,target=/ctx --mount=type=cache,id=gate,target=/gate cat /ctx/config.txt > /seen; touch /gate/started; ${waitIn('/gate/go')}; cat /ctx/config.txt >> /seen
`,
    'config.txt': 'v1\n',
    'other.txt': 'unchanged\n',
  });
  const first = c.spawnBuild(dir, ['-o', `type=local,dest=${join(c.env.root, 'out1')}`]);
  await waitForFile(join(c.mountData('gate'), 'started'), 'the step to start');
  writeFileSync(join(dir, 'config.txt'), 'v2\n');
  writeFileSync(join(c.mountData('gate'), 'go'), '');
  const r = await first.done;
  assert.notEqual(r.code, 0, 'the build fails');
  assert.match(r.stderr, /config\.txt changed in the build context while this step ran; its result was not cached/);
  assert.doesNotMatch(r.stderr, /other\.txt/);
  assert.match(r.stderr, /Dockerfile:2/, 'names the line');
  assert.ok(!existsSync(join(c.env.root, 'out1', 'seen')), 'no output was written');

  // Nothing was cached: the next build runs the step, on the new content.
  const out2 = join(c.env.root, 'out2');
  const again = await c.ok(dir, ['-o', `type=local,dest=${out2}`]);
  assert.ok(!step(again.steps, 'RUN').cached, misses(again.steps));
  assert.equal(readFileSync(join(out2, 'seen'), 'utf8'), 'v2\nv2\n');
  const third = await c.ok(dir, ['-o', 'type=cacheonly']);
  assert.equal(misses(third.steps), '', 'then it is cached as usual');
  await c.assertConsistent('after the refused step');
  expectOk(await c.cli(['doctor']), 'doctor');
});

test('COPY: a context file written after the step was keyed but before it copied is refused', async (t) => {
  const c = await controlEnv('ctx-copy');
  t.after(() => c.env.cleanup());
  // One job slot: the gate RUN holds it while the COPY, already keyed (its miss printed), waits.
  const dir = c.env.context('ctx', {
    Dockerfile: `FROM busybox AS gate
RUN --mount=type=cache,id=gate,target=/gate touch /gate/started; ${waitIn('/gate/go')}; echo gate > /gate-done

FROM busybox AS files
COPY config.txt /etc/app/

FROM busybox
COPY --from=gate /gate-done /
COPY --from=files /etc/app/config.txt /
`,
    'config.txt': 'v1\n',
  });
  const first = c.spawnBuild(dir, ['--jobs', '1', '-o', `type=local,dest=${join(c.env.root, 'out1')}`]);
  let progress = '';
  const keyed = new Promise<void>((resolve) =>
    first.child.stderr!.on('data', (d: Buffer) => {
      progress += d.toString();
      if (/^#(\d+) \[files 2\/2\] COPY config\.txt[^\n]*\n(?:[^\n]*\n)*?#\1 cache miss/m.test(progress)) resolve();
    }),
  );
  await waitForFile(join(c.mountData('gate'), 'started'), 'the gate step to hold the job slot');
  await keyed;
  writeFileSync(join(dir, 'config.txt'), 'v2\n');
  writeFileSync(join(c.mountData('gate'), 'go'), '');
  const r = await first.done;
  assert.notEqual(r.code, 0, `the build fails:\n${r.stderr}`);
  assert.match(r.stderr, /config\.txt changed in the build context while this step ran; its result was not cached/);
  assert.match(r.stderr, /Dockerfile:5/);
  assert.equal(r.stderr.match(/ERROR: config\.txt changed/g)?.length, 1, 'one error line for the step');

  const out = join(c.env.root, 'out2');
  const again = await c.ok(dir, ['-o', `type=local,dest=${out}`]);
  assert.ok(!step(again.steps, 'COPY config.txt').cached, misses(again.steps));
  assert.equal(readFileSync(join(out, 'config.txt'), 'utf8'), 'v2\n');
});

test('COPY of a context that does not change while it runs is verified and cached', async (t) => {
  const c = await controlEnv('ctx-stable');
  t.after(() => c.env.cleanup());
  const files: Record<string, string> = { Dockerfile: 'FROM busybox\nCOPY . /app/\n' };
  for (let i = 0; i < 50; i++) files[`src/f${i}.txt`] = `file ${i}\n`;
  const dir = c.env.context('ctx', files);
  const r = await c.ok(dir, ['-o', 'type=cacheonly']);
  assert.ok(!step(r.steps, 'COPY').cached);
  assert.match(r.stderr, /context: read \d+ bytes/);
  const again = await c.ok(dir, ['-o', 'type=cacheonly']);
  assert.equal(misses(again.steps), '');
});

test('COPY: a file linked from the previous result, not read, may change after keying; the step keeps the keyed content', async (t) => {
  const c = await controlEnv('ctx-linked');
  t.after(() => c.env.cleanup());
  const dir = c.env.context('ctx', {
    Dockerfile: `FROM busybox AS gate
ARG ROUND
RUN --mount=type=cache,id=gate,target=/gate echo $ROUND; touch /gate/started; ${waitIn('/gate/go')}; rm /gate/go /gate/started; echo gate > /gate-done

FROM busybox AS files
COPY src /app/src

FROM busybox
COPY --from=gate /gate-done /
COPY --from=files /app/src/ /src/
`,
    'src/a.txt': 'a1\n',
    'src/b.txt': 'b1\n',
  });
  /** A build whose COPY is keyed (its miss printed) while the gate step holds the one job slot; `meanwhile` runs then. */
  const gated = async (round: string, out: string, meanwhile: () => void) => {
    const b = c.spawnBuild(dir, ['--jobs', '1', '--build-arg', `ROUND=${round}`, '-o', `type=local,dest=${out}`]);
    let progress = '';
    const keyed = new Promise<void>((resolve) =>
      b.child.stderr!.on('data', (d: Buffer) => {
        progress += d.toString();
        if (/^#(\d+) \[files 2\/2\] COPY src[^\n]*\n(?:[^\n]*\n)*?#\1 cache miss/m.test(progress)) resolve();
      }),
    );
    await waitForFile(join(c.mountData('gate'), 'started'), 'the gate step to hold the job slot');
    if (round !== '1') await keyed;
    meanwhile();
    writeFileSync(join(c.mountData('gate'), 'go'), '');
    return b.done;
  };
  expectOk(await gated('1', join(c.env.root, 'out1'), () => undefined), 'round 1');
  // Round 2: b changed, so the COPY reruns and links a from round 1's layer. a is rewritten (same
  // size) after the COPY was keyed with a1, before it copies.
  writeFileSync(join(dir, 'src/b.txt'), 'b2\n');
  const out2 = join(c.env.root, 'out2');
  const r = await gated('2', out2, () => writeFileSync(join(dir, 'src/a.txt'), 'a2\n'));
  assert.equal(r.code, 0, `the build succeeds:\n${r.stderr}`);
  assert.equal(readFileSync(join(out2, 'src/a.txt'), 'utf8'), 'a1\n', 'the content the key holds');
  assert.equal(readFileSync(join(out2, 'src/b.txt'), 'utf8'), 'b2\n');
  // The next build sees a2 and runs the COPY again.
  const out3 = join(c.env.root, 'out3');
  const third = await gated('3', out3, () => undefined);
  expectOk(third, 'round 3');
  assert.match(misses(third.steps), /src\/a\.txt content changed/);
  assert.equal(readFileSync(join(out3, 'src/a.txt'), 'utf8'), 'a2\n');
  await c.assertConsistent('after the linked COPY');
});

test('the context is checksummed ahead while a container runs; a file changed after that is still seen by its step', async (t) => {
  const c = await controlEnv('ctx-ahead');
  t.after(() => c.env.cleanup());
  const dir = c.env.context('ctx', {
    Dockerfile: `FROM busybox
RUN --mount=type=cache,id=gate,target=/gate touch /gate/started; ${waitIn('/gate/go')}; echo ran > /ran
COPY src /app/src
`,
    'src/a.txt': 'v1\n',
    'src/b.txt': 'b\n',
  });
  const out = join(c.env.root, 'out');
  const b = c.spawnBuild(dir, ['-o', `type=local,dest=${out}`], { STRATA_DEBUG: '1' });
  let stderr = '';
  const ahead = new Promise<void>((resolve) =>
    b.child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/debug: context of \[stage-0 3\/3\] COPY src \/app\/src checksummed ahead \(5 bytes read\)/.test(stderr)) resolve();
    }),
  );
  await waitForFile(join(c.mountData('gate'), 'started'), 'the RUN step to start');
  const late = setTimeout(() => b.child.kill('SIGKILL'), 30_000);
  await Promise.race([ahead, b.done.then(() => assert.fail(`no checksum ahead while the RUN step ran:\n${stderr}`))]);
  clearTimeout(late);
  assert.doesNotMatch(stderr, /#\d+ \[stage-0 3\/3\] COPY/, 'the COPY step itself has not started');
  writeFileSync(join(dir, 'src/a.txt'), 'v2 longer\n');
  writeFileSync(join(c.mountData('gate'), 'go'), '');
  const r = await b.done;
  expectOk(r, 'the build');
  assert.equal(readFileSync(join(out, 'app/src/a.txt'), 'utf8'), 'v2 longer\n');
  // read ahead (5 bytes), then a.txt again at the step (10 bytes), and once more after the copy
  // when that was within RACY_MS of its change (its stat could not vouch for it)
  assert.match(r.stderr, /context: read (15|25) bytes/);
  const again = await c.ok(dir, ['-o', 'type=cacheonly']);
  assert.equal(misses(again.steps), '', 'the recorded key is the one of the content copied');
});
