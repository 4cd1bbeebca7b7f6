// Two builds on one store at once: cache mount sharing modes (locked serializes, private hands the
// second user a fresh instance, shared lets both write), and `strata prune --all` while a build
// runs (it must finish, its cache mount and parent layers must survive).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlEnv, described, expectOk, misses, step, waitForFile, type ControlEnv } from './support.js';

/** A RUN line that waits (bounded: 30 s) until `file` exists. */
const waitIn = (file: string) => `i=0; while [ ! -e ${file} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done`;

async function twoBuilds(c: ControlEnv, a: string, b: string, beforeB: string, outA: string, outB: string, between?: () => Promise<void>) {
  const first = c.spawnBuild(a, ['-o', `type=local,dest=${outA}`]);
  await waitForFile(beforeB, 'the first build to hold the cache mount');
  const second = c.spawnBuild(b, ['-o', `type=local,dest=${outB}`]);
  if (between) await between();
  const [ra, rb] = await Promise.all([first.done, second.done]);
  expectOk(ra, 'first build');
  expectOk(rb, 'second build');
  return { ra, rb };
}

test('sharing=locked: the second build waits for the first to release the mount', async (t) => {
  const c = await controlEnv('locked');
  t.after(() => c.env.cleanup());
  const stamp = (who: string, what: string) => `echo "${who} ${what} $(cut -d' ' -f1 /proc/uptime)" >> /c/log`;
  const df = (who: string) => `FROM busybox
RUN --mount=type=cache,target=/c,id=lk,sharing=locked ${stamp(who, 'start')}; touch /c/${who}-in; sleep 2; ${stamp(who, 'end')}; cp /c/log /log
`;
  const a = c.env.context('a', { Dockerfile: df('A') });
  const b = c.env.context('b', { Dockerfile: df('B') });
  const { rb } = await twoBuilds(c, a, b, join(c.mountData('lk'), 'A-in'), join(c.env.root, 'outA'), join(c.env.root, 'outB'));
  const log = readFileSync(join(c.mountData('lk'), 'log'), 'utf8').trim().split('\n').map((l) => l.split(' '));
  assert.deepEqual(log.map((l) => `${l[0]} ${l[1]}`), ['A start', 'A end', 'B start', 'B end'], 'no interleaving');
  const time = (who: string, what: string) => Number(log.find((l) => l[0] === who && l[1] === what)![2]);
  assert.ok(time('B', 'start') >= time('A', 'end'), 'B ran after A let go');
  // B saw what A wrote (the same instance), and the store records one mount.
  assert.equal(readFileSync(join(c.env.root, 'outB', 'log'), 'utf8').split('\n').filter(Boolean).length, 4);
  assert.ok(step(rb.steps, 'sharing=locked').miss);
  const mounts = (await c.du(['type=exec.cachemount']));
  assert.deepEqual(mounts.map((m) => m.description), ['cache mount lk (sharing=locked, used by 2 builds)']);
  assert.deepEqual(readdirSync(join(c.mountData('lk'), '..')).sort(), ['data', 'leases'], 'no lock or lease left behind');
  assert.deepEqual(readdirSync(join(c.mountData('lk'), '..', 'leases')), []);
});

test('sharing=private: a concurrent user gets a fresh instance; the shared one is untouched by it', async (t) => {
  const c = await controlEnv('private');
  t.after(() => c.env.cleanup());
  const a = c.env.context('a', {
    Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/c,id=pv,sharing=private touch /c/A-was-here; ${waitIn('/c/go')}; ls /c > /a-saw
`,
  });
  const b = c.env.context('b', {
    Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/c,id=pv,sharing=private ls -A /c > /b-saw; touch /c/B-was-here
`,
  });
  const data = c.mountData('pv');
  const outA = join(c.env.root, 'outA');
  const outB = join(c.env.root, 'outB');
  const first = c.spawnBuild(a, ['-o', `type=local,dest=${outA}`]);
  await waitForFile(join(data, 'A-was-here'), 'the first build to hold the cache mount');
  // While A holds the mount, B runs to completion.
  expectOk(await c.build(b, ['-o', `type=local,dest=${outB}`]), 'second build');
  assert.equal(readFileSync(join(outB, 'b-saw'), 'utf8'), '', 'B got an empty instance');
  writeFileSync(join(data, 'go'), '');
  expectOk(await first.done, 'first build');
  assert.deepEqual(readFileSync(join(outA, 'a-saw'), 'utf8').split('\n').filter(Boolean), ['A-was-here', 'go']);
  assert.deepEqual(readdirSync(data).sort(), ['A-was-here', 'go'], "B's writes went to its throwaway instance");
  // No throwaway instance is left in the store, and once free the shared instance is handed out.
  assert.deepEqual(readdirSync(join(c.env.store, 'tmp')).filter((n) => n.startsWith('cachemount')), []);
  const again = c.env.context('b2', {
    Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/c,id=pv,sharing=private ls -A /c > /b-saw
`,
  });
  const outB2 = join(c.env.root, 'outB2');
  expectOk(await c.build(again, ['-o', `type=local,dest=${outB2}`]), 'third build');
  assert.deepEqual(readFileSync(join(outB2, 'b-saw'), 'utf8').split('\n').filter(Boolean), ['A-was-here', 'go']);
});

test('sharing=shared: two builds write into the one instance at the same time', async (t) => {
  const c = await controlEnv('shared');
  t.after(() => c.env.cleanup());
  const a = c.env.context('a', {
    Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/c,id=sh,sharing=shared touch /c/A; ${waitIn('/c/B')}; ls /c > /a-saw
`,
  });
  const b = c.env.context('b', {
    Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/c,id=sh ls /c > /b-saw; touch /c/B
`,
  });
  const outA = join(c.env.root, 'outA');
  const outB = join(c.env.root, 'outB');
  await twoBuilds(c, a, b, join(c.mountData('sh'), 'A'), outA, outB);
  assert.equal(readFileSync(join(outB, 'b-saw'), 'utf8'), 'A\n', 'B saw what A wrote while A was running');
  assert.equal(readFileSync(join(outA, 'a-saw'), 'utf8'), 'A\nB\n', 'A saw what B wrote while A was running');
  assert.deepEqual(readdirSync(c.mountData('sh')).sort(), ['A', 'B']);
});

test('prune --all during a build: the build succeeds, its cache mount and parent layers survive', async (t) => {
  const c = await controlEnv('active');
  t.after(() => c.env.cleanup());
  const ctx = c.env.context('ctx', {
    Dockerfile: `FROM busybox
RUN head -c 100000 /dev/urandom > /parent
ARG N
RUN --mount=type=cache,target=/c,id=live echo $N >> /c/log && touch /c/running-$N && sleep 3 && cat /c/log > /seen
RUN cat /seen > /final && wc -c < /parent >> /final
RUN --mount=type=cache,target=/m,id=marker touch /m/later-$N && sleep 2
`,
  });
  const unrelated = c.env.context('unrelated', { Dockerfile: 'FROM busybox\nRUN --mount=type=cache,target=/u,id=unused echo u > /u/f && echo x > /x\n' });
  await c.ok(ctx, ['--build-arg', 'N=1']);
  await c.ok(unrelated);
  const before = await c.du();
  const [parent] = described(before, 'RUN head -c 100000');

  const out = join(c.env.root, 'out');
  const running = c.spawnBuild(ctx, ['--build-arg', 'N=2', '-o', `type=local,dest=${out}`]);
  await waitForFile(join(c.mountData('live'), 'running-2'), 'the RUN with the cache mount to start');
  const during = await c.du();
  assert.equal(during.find((r) => r.id === 'live')!.in_use, true, 'the mount is leased');
  assert.equal(during.find((r) => r.id === parent!.id)!.in_use, true, 'the parent was used by the running build');
  // The mount commands refuse to change a mount a build is using.
  for (const args of [['mount', 'rm', 'live'], ['mount', 'import', 'live', c.env.root]]) {
    const busy = await c.env.strata(args);
    assert.equal(busy.code, 1, args.join(' '));
    assert.match(busy.stderr, /^error: cache mount live is in use by a running build$/m);
    assert.match(busy.stderr, /^hint: try again when the build has finished$/m);
  }
  const ls = JSON.parse((await c.cli(['mount', 'ls', '--format', 'json'])).stdout) as { id: string; in_use: boolean }[];
  assert.deepEqual(ls.map((m) => `${m.id} ${m.in_use}`).sort(), ['live true', 'marker false', 'unused false']);
  const pruned = expectOk(await c.env.strata(['prune', '--all']), 'prune --all during a build');
  const removed = pruned.stdout.split('\n').filter((l) => l.startsWith('removed '));
  assert.ok(removed.some((l) => l.startsWith('removed exec.cachemount unused ')), pruned.stdout);
  assert.ok(removed.some((l) => l.includes('echo x > /x')), 'what the build does not use goes');
  assert.ok(!removed.some((l) => / live /.test(l) || l.includes(parent!.id) || l.startsWith('removed image ')), pruned.stdout);

  const r = await running.done;
  expectOk(r, 'the build that ran during prune');
  assert.ok(step(r.steps, 'RUN head -c 100000').cached);
  assert.equal(readFileSync(join(out, 'final'), 'utf8'), '1\n2\n100000\n');
  assert.equal(readFileSync(join(c.mountData('live'), 'log'), 'utf8'), '1\n2\n', 'the cache mount kept its contents');
  await c.assertConsistent('prune during a build');
  const after = await c.du();
  assert.ok(after.some((x) => x.id === parent!.id));
  assert.ok(after.some((x) => x.id === 'live'));
  assert.ok(!after.some((x) => x.id === 'unused'));
  // Everything the build used or wrote is still a hit.
  const again = await c.ok(ctx, ['--build-arg', 'N=2']);
  assert.equal(misses(again.steps), '');
  assert.ok(existsSync(join(c.mountData('live'), 'running-2')));

  // Between its steps a build holds no lease on a mount it used, but the mount is still its own.
  const third = c.spawnBuild(ctx, ['--build-arg', 'N=3']);
  await waitForFile(join(c.mountData('marker'), 'later-3'), 'the last step to start');
  const du3 = await c.du(['type=exec.cachemount']);
  assert.equal(du3.find((m) => m.id === 'live')?.in_use, true, JSON.stringify(du3));
  const pruned3 = expectOk(await c.env.strata(['prune', '--all']), 'prune --all during the last step');
  assert.ok(!/ live /.test(pruned3.stdout), pruned3.stdout);
  expectOk(await third.done, 'third build');
  assert.equal(readFileSync(join(c.mountData('live'), 'log'), 'utf8'), '1\n2\n3\n');
  await c.assertConsistent('prune during the last step');
});

test('sharing=locked: a lock left by a killed process is taken over, not waited on forever', async (t) => {
  const c = await controlEnv('stale-lock');
  t.after(() => c.env.cleanup());
  const ctx = c.env.context('ctx', { Dockerfile: 'FROM busybox\nARG N\nRUN --mount=type=cache,target=/c,id=stale,sharing=locked echo $N >> /c/log\n' });
  await c.ok(ctx, ['--build-arg', 'N=1']);
  const lock = join(c.mountData('stale'), '..', 'lock');
  // Its owner died after writing its pid (a pid no process has) ...
  mkdirSync(lock);
  writeFileSync(join(lock, 'pid'), '2147483646');
  const withTimeout = async (what: string) => {
    const b = c.spawnBuild(ctx, ['--build-arg', `N=${what}`]);
    const timer = setTimeout(() => b.child.kill('SIGKILL'), 60_000);
    const r = await b.done;
    clearTimeout(timer);
    expectOk(r, `build past a ${what} lock`);
  };
  await withTimeout('dead-owner');
  assert.ok(!existsSync(lock), 'released after use');
  // ... or between creating the lock and writing its pid (no pid file, long ago).
  mkdirSync(lock);
  const old = new Date(Date.now() - 60_000);
  utimesSync(lock, old, old);
  await withTimeout('no-pid');
  assert.equal(readFileSync(join(c.mountData('stale'), 'log'), 'utf8'), '1\ndead-owner\nno-pid\n');
});
