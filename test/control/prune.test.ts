// `strata prune`: each filter (until, id, type), --all, --keep-storage, --dry-run; cache mounts go
// only when asked for; layers other records or named images hold stay; the store stays consistent
// (`strata doctor`) and the next build works, missing exactly where records were removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlEnv, described, expectOk, misses, step, type ControlEnv, type DuRecord } from './support.js';
import { run } from '../build/harness.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-05-01T08:00:00Z');
const at = (ms: number) => ({ STRATA_FAKE_NOW: String(ms) });

/** A store with one build of a three-step Dockerfile with two cache mounts. */
async function setup(name: string): Promise<{ c: ControlEnv; ctx: string; before: DuRecord[] }> {
  const c = await controlEnv(`prune-${name}`);
  const ctx = c.env.context('ctx', {
    Dockerfile: `FROM busybox
RUN head -c 100000 /dev/urandom > /one
RUN --mount=type=cache,target=/pip,id=pip echo pip >> /pip/log && head -c 20000 /dev/urandom > /two
RUN --mount=type=cache,target=/npm,id=npm echo npm >> /npm/log && head -c 30000 /dev/urandom > /three
`,
  });
  await c.ok(ctx, [], at(T0));
  return { c, ctx, before: await c.du() };
}

function removedLines(stdout: string): string[] {
  return stdout.split('\n').filter((l) => /^(would remove|removed) /.test(l));
}

const ofType = (rs: DuRecord[], type: string) => rs.filter((r) => r.type === type);
const key = (r: DuRecord) => `${r.type}:${r.id}`;
const keys = (rs: DuRecord[]) => rs.map(key).sort();

test('prune --dry-run lists what prune removes and removes nothing', async (t) => {
  const { c } = await setup('dry');
  t.after(() => c.env.cleanup());
  const before = await c.du();
  const dry = await c.cli(['prune', '--dry-run']);
  assert.equal((await c.cli(['du', '--format', 'json'])).stdout, JSON.stringify(before, null, 2) + '\n', 'nothing changed');
  const would = removedLines(dry.stdout);
  assert.ok(would.every((l) => l.startsWith('would remove ')));
  assert.match(dry.stdout, /^Total: would free \S+$/m);
  const real = await c.cli(['prune']);
  assert.deepEqual(removedLines(real.stdout).map((l) => l.replace(/^removed /, '')), would.map((l) => l.replace(/^would remove /, '')));
  await c.assertConsistent('prune');
  const dryAll = await c.cli(['prune', '--all', '--dry-run']);
  assert.deepEqual(removedLines(dryAll.stdout).map((l) => l.split(' ').slice(2, 4).join(' ')).sort(), ['exec.cachemount npm', 'exec.cachemount pip']);
  assert.equal(ofType(await c.du(), 'exec.cachemount').length, 2);
});

test('prune without filters: every record but cache mounts; the next build reruns and keeps the mounts\' contents', async (t) => {
  const { c, ctx, before } = await setup('plain');
  t.after(() => c.env.cleanup());
  const out = await c.cli(['prune'], at(T0 + HOUR));
  const removed = removedLines(out.stdout);
  assert.equal(removed.length, before.filter((r) => r.type !== 'exec.cachemount').length, out.stdout);
  const after = await c.du();
  assert.deepEqual(keys(after), ['exec.cachemount:npm', 'exec.cachemount:pip']);
  // Everything regular and image went, so the freed total is the whole store but the mounts.
  const freed = before.filter((r) => r.type !== 'exec.cachemount').reduce((n, r) => n + r.size, 0);
  assert.ok(freed > 100_000);
  await c.assertConsistent('prune');
  assert.deepEqual(readdirNames(join(c.env.store, 'layers')), [], 'no layer left on disk');

  const again = await c.ok(ctx, [], at(T0 + 2 * HOUR));
  assert.equal(step(again.steps, 'RUN head -c 100000').miss, 'cache record missing (pruned, or the previous build did not finish)');
  assert.equal(again.steps.filter((s) => s.cached).length, 0);
  assert.equal(readFileSync(join(c.mountData('pip'), 'log'), 'utf8'), 'pip\npip\n', 'the cache mount kept its contents');
  await c.assertConsistent('the build after prune');
});

test('prune --filter type=regular removes step records only; type=image only unused layers', async (t) => {
  const { c, ctx, before } = await setup('type');
  t.after(() => c.env.cleanup());
  // The base layer is in every record's chain: a type=image prune must leave it (and say nothing).
  const img = await c.cli(['prune', '--filter', 'type=image']);
  assert.deepEqual(removedLines(img.stdout), []);
  assert.match(img.stdout, /^Total: freed 0B$/m);
  assert.deepEqual(keys(await c.du()), keys(before));
  await c.assertConsistent('prune type=image');
  const again = await c.ok(ctx, [], at(T0 + HOUR));
  assert.equal(misses(again.steps), '');

  const reg = await c.cli(['prune', '--filter', 'type=regular'], at(T0 + 2 * HOUR));
  assert.equal(removedLines(reg.stdout).length, 3);
  assert.ok(removedLines(reg.stdout).every((l) => l.startsWith('removed regular ')));
  const after = await c.du();
  assert.deepEqual(keys(after), keys(before.filter((r) => r.type !== 'regular')), 'base layer and mounts stay');
  await c.assertConsistent('prune type=regular');
  // Now nothing holds the base layer: a type=image prune takes it.
  const img2 = await c.cli(['prune', '--filter', 'type=image']);
  assert.equal(removedLines(img2.stdout).length, 1);
  assert.deepEqual(keys(await c.du()), ['exec.cachemount:npm', 'exec.cachemount:pip']);
  await c.assertConsistent('prune type=image');
  const rebuilt = await c.ok(ctx, [], at(T0 + 3 * HOUR));
  assert.equal(rebuilt.steps.filter((s) => s.cached).length, 0);
  await c.assertConsistent('the build after prune');
});

test('prune --filter id=ID removes that record: that step misses, naming why; its parent stays cached', async (t) => {
  const { c, ctx, before } = await setup('id');
  t.after(() => c.env.cleanup());
  const [second] = described(before, 'RUN --mount=type=cache,target=/pip');
  const out = await c.cli(['prune', '--filter', `id=${second!.id}`]);
  const removed = removedLines(out.stdout);
  assert.equal(removed.length, 1, out.stdout);
  assert.match(removed[0]!, new RegExp(`^removed regular ${second!.id} `));
  // Its layer is in the third step's chain, so nothing is freed yet.
  assert.match(out.stdout, /^Total: freed 0B$/m);
  assert.deepEqual(keys(await c.du()).filter((k) => !k.startsWith('image:')), keys(before.filter((r) => r.id !== second!.id && r.type !== 'image')));
  await c.assertConsistent('prune id=');

  const again = await c.ok(ctx, [], at(T0 + HOUR));
  assert.ok(step(again.steps, 'RUN head -c 100000').cached);
  assert.equal(step(again.steps, 'RUN --mount=type=cache,target=/pip').miss, 'cache record missing (pruned, or the previous build did not finish)');
  assert.equal(step(again.steps, 'RUN --mount=type=cache,target=/npm').miss, 'parent step [stage-0 3/4] RUN --mount=type=cache,target=/pip,id=pip echo pip >> /pip/log && head -c 20000 /dev/urandom > /two changed');
  await c.assertConsistent('the build after prune');
  // An id nothing has removes nothing.
  const none = await c.cli(['prune', '--filter', 'id=ffffffffffff']);
  assert.deepEqual(removedLines(none.stdout), []);
});

test('prune --filter until=DUR removes only what was not used for that long', async (t) => {
  const { c, ctx } = await setup('until');
  t.after(() => c.env.cleanup());
  const other = c.env.context('other', { Dockerfile: 'FROM busybox\nRUN head -c 40000 /dev/urandom > /other\n' });
  await c.ok(other, [], at(T0 + 3 * HOUR));
  // Two hours later: the first build's records are 5h old, the second's 2h (its base layer too).
  const out = await c.cli(['prune', '--filter', 'until=4h'], at(T0 + 5 * HOUR));
  const removed = removedLines(out.stdout);
  assert.equal(removed.length, 3, out.stdout);
  for (const l of removed) assert.match(l, /^removed regular [0-9a-f]{12} \S+ \[stage-0 \d\/4\] RUN /);
  assert.deepEqual(described(await c.du(), 'RUN head -c 40000').length, 1);
  await c.assertConsistent('prune until=');
  const first = await c.ok(ctx, [], at(T0 + 6 * HOUR));
  assert.equal(step(first.steps, 'RUN head -c 100000').miss, 'cache record missing (pruned, or the previous build did not finish)');
  const second = await c.ok(other, [], at(T0 + 6 * HOUR));
  assert.equal(misses(second.steps), '');
  // until combines with type: an old cache mount goes only when named.
  const mounts = await c.cli(['prune', '--filter', 'until=1h', '--filter', 'type=exec.cachemount'], at(T0 + 100 * HOUR));
  assert.equal(removedLines(mounts.stdout).length, 2);
  assert.equal(ofType(await c.du(), 'exec.cachemount').length, 0);
  await c.assertConsistent('prune until= type=exec.cachemount');
});

test('pruning one cache mount by id leaves the others and every record', async (t) => {
  const { c, ctx, before } = await setup('mount');
  t.after(() => c.env.cleanup());
  const out = await c.cli(['prune', '--filter', 'type=exec.cachemount', '--filter', 'id=pip']);
  assert.deepEqual(removedLines(out.stdout).map((l) => l.split(' ').slice(0, 3).join(' ')), ['removed exec.cachemount pip']);
  assert.deepEqual(keys(await c.du()), keys(before.filter((r) => r.id !== 'pip')));
  assert.ok(!existsSync(c.mountData('pip')));
  assert.equal(readFileSync(join(c.mountData('npm'), 'log'), 'utf8'), 'npm\n');
  await c.assertConsistent('prune of a cache mount');
  // Steps stay cached (a cache mount's contents are not part of any key) ...
  const again = await c.ok(ctx, [], at(T0 + HOUR));
  assert.equal(misses(again.steps), '');
  // ... and a rerun gets a fresh, empty mount.
  const rerun = await c.ok(ctx, ['--no-cache'], at(T0 + 2 * HOUR));
  assert.equal(rerun.steps.filter((s) => s.cached).length, 0);
  assert.equal(readFileSync(join(c.mountData('pip'), 'log'), 'utf8'), 'pip\n');
  assert.equal(readFileSync(join(c.mountData('npm'), 'log'), 'utf8'), 'npm\nnpm\n');
  // id= alone names a mount as well; a regular-record id prefix never matches a mount.
  const byId = await c.cli(['prune', '--filter', 'id=npm', '--dry-run']);
  assert.deepEqual(removedLines(byId.stdout).map((l) => l.split(' ').slice(2, 4).join(' ')), ['exec.cachemount npm']);
});

test('prune --all removes everything not in use, cache mounts included; named images keep their layers', async (t) => {
  const { c, ctx } = await setup('all');
  t.after(() => c.env.cleanup());
  const named = c.env.context('named', { Dockerfile: 'FROM busybox\nRUN echo kept > /kept\n' });
  await c.ok(named, ['-t', 'keepme:1'], at(T0 + HOUR));
  const out = await c.cli(['prune', '--all'], at(T0 + 2 * HOUR));
  assert.ok(removedLines(out.stdout).some((l) => l.startsWith('removed exec.cachemount pip ')));
  const left = await c.du();
  assert.ok(left.every((r) => r.type === 'image' && /of a named image$/.test(r.description)), JSON.stringify(left, null, 1));
  assert.equal(left.length, 2, 'busybox and the RUN layer of keepme:1');
  assert.ok(!existsSync(c.mountData('pip')) && !existsSync(c.mountData('npm')));
  await c.assertConsistent('prune --all');
  const images = JSON.parse((await c.cli(['images', '--format', 'json'])).stdout) as { name: string }[];
  assert.ok(images.some((i) => i.name.includes('keepme')));
  const saved = join(c.env.root, 'keepme.tar');
  await c.cli(['save', 'keepme:1', '-o', saved]);
  assert.ok(existsSync(saved));
  const entries = expectOk(await run('tar', ['-tf', saved]), 'tar -tf').stdout;
  assert.ok(entries.split('\n').filter((e) => e.startsWith('blobs/sha256/')).length >= 4, 'manifest, config and both layers');
  const again = await c.ok(ctx, [], at(T0 + 3 * HOUR));
  assert.equal(again.steps.filter((s) => s.cached).length, 0);
  assert.equal(readFileSync(join(c.mountData('pip'), 'log'), 'utf8'), 'pip\n', 'a new, empty cache mount');
  await c.assertConsistent('the build after prune --all');
});

test('prune --keep-storage SIZE removes least recently used records until the store fits, cache mounts last', async (t) => {
  const c = await controlEnv('prune-keep');
  t.after(() => c.env.cleanup());
  const ctxs: string[] = [];
  for (let i = 0; i < 4; i++) {
    ctxs.push(c.env.context(`b${i}`, {
      Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/c,id=m${i} head -c 10000 /dev/urandom > /c/f && head -c 200000 /dev/urandom > /layer${i}
RUN echo ${i} > /n
`,
    }));
    await c.ok(ctxs[i]!, [], at(T0 + i * HOUR));
  }
  const before = await c.du();
  const total = before.reduce((n, r) => n + r.size, 0);
  const layerOf = (i: number) => described(before, `/layer${i}`)[0]!;
  // Room for all but about two of the 400 kB step results.
  const keep = total - layerOf(0).size - layerOf(1).size + 1000;
  const dry = await c.cli(['prune', '--keep-storage', String(keep), '--dry-run'], at(T0 + 10 * HOUR));
  const out = await c.cli(['prune', '--keep-storage', String(keep)], at(T0 + 10 * HOUR));
  assert.deepEqual(removedLines(out.stdout).map((l) => l.replace(/^removed /, '')), removedLines(dry.stdout).map((l) => l.replace(/^would remove /, '')));
  const after = await c.du();
  const left = after.reduce((n, r) => n + r.size, 0);
  assert.ok(left <= keep, `${left} > ${keep}`);
  assert.equal(described(after, '/layer0').length, 0, 'the oldest went');
  assert.equal(described(after, '/layer1').length, 0);
  assert.equal(described(after, '/layer2').length, 1, 'newer ones stay');
  assert.equal(described(after, '/layer3').length, 1);
  assert.equal(ofType(after, 'exec.cachemount').length, 4, 'without --all no cache mount goes');
  assert.ok(ofType(after, 'image').length === 1, 'the base layer others hold stays');
  await c.assertConsistent('prune --keep-storage');
  const r3 = await c.ok(ctxs[3]!, [], at(T0 + 11 * HOUR));
  assert.equal(misses(r3.steps), '');
  const r0 = await c.ok(ctxs[0]!, [], at(T0 + 11 * HOUR));
  assert.match(step(r0.steps, '/layer0').miss ?? '', /^cache record missing/);

  // With --all and a size below every record, mounts go too, after all regular records.
  const tiny = await c.cli(['prune', '--all', '--keep-storage', '1'], at(T0 + 20 * HOUR));
  const order = removedLines(tiny.stdout).map((l) => l.split(' ')[1]);
  const firstMount = order.indexOf('exec.cachemount');
  assert.ok(firstMount > 0 && order.slice(firstMount).every((t) => t === 'exec.cachemount'), order.join(' '));
  assert.deepEqual(await c.du(), []);
  await c.assertConsistent('prune --all --keep-storage 1');
});

function readdirNames(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}
