// Automatic GC after each build (`--gc-keep-storage SIZE`, STRATA_GC_KEEP_STORAGE): least recently
// used records go first, cache mounts last, the records of the build that just ran never.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { controlEnv, described, misses, type ControlEnv, type DuRecord } from './support.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-07-01T00:00:00Z');
const at = (ms: number) => ({ STRATA_FAKE_NOW: String(ms) });
const sum = (rs: DuRecord[]) => rs.reduce((n, r) => n + r.size, 0);

function project(c: ControlEnv, i: number): string {
  return c.env.context(`p${i}`, {
    Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/c,id=mount${i} head -c 20000 /dev/urandom > /c/f && head -c 200000 /dev/urandom > /big${i}
RUN echo ${i} > /n${i}
`,
  });
}

test('GC keeps the store under --gc-keep-storage: oldest records first, cache mounts last, the last build whole', async (t) => {
  const c = await controlEnv('gc');
  t.after(() => c.env.cleanup());
  const ctxs = [0, 1, 2, 3, 4].map((i) => project(c, i));
  // Build 0 without pressure, to learn the sizes involved.
  await c.ok(ctxs[0]!, [], at(T0));
  const first = await c.du();
  const base = sum(first.filter((r) => r.type === 'image'));
  const perBuild = sum(first.filter((r) => r.type === 'regular'));
  const perMount = sum(first.filter((r) => r.type === 'exec.cachemount'));
  assert.ok(perBuild > 200_000 && perMount >= 20_000 && base > 0, JSON.stringify(first, null, 1));
  // Room for the base layer, every cache mount and about two builds' records.
  const limit = base + 5 * perMount + Math.round(2.5 * perBuild);

  const warnings: string[] = [];
  for (let i = 1; i <= 4; i++) {
    const r = await c.ok(ctxs[i]!, ['--gc-keep-storage', String(limit)], at(T0 + i * HOUR));
    warnings.push(...r.stderr.split('\n').filter((l) => l.startsWith('WARNING: store over')));
    const now = await c.du();
    assert.ok(sum(now) <= limit, `after build ${i}: ${sum(now)} > ${limit}`);
  }
  assert.ok(warnings.length >= 2, warnings.join('\n'));
  assert.match(warnings[0]!, /^WARNING: store over \S+: removed \d+ least recently used record\(s\), freed \S+$/);

  const left = await c.du();
  const builds = (i: number) => described(left, `/big${i}`).length + described(left, `> /n${i}`).length;
  assert.equal(builds(0), 0, 'the oldest build\'s records went');
  assert.equal(builds(1), 0);
  assert.equal(builds(3), 2);
  assert.equal(builds(4), 2, 'the last build is whole');
  assert.deepEqual(left.filter((r) => r.type === 'exec.cachemount').map((m) => m.id).sort(), ['mount0', 'mount1', 'mount2', 'mount3', 'mount4'], 'cache mounts outlive records');
  await c.assertConsistent('GC');

  // The newest build is still all hits; the oldest reruns, saying why, and keeps its mount's files.
  const again = await c.ok(ctxs[4]!, ['--gc-keep-storage', String(limit)], at(T0 + 5 * HOUR));
  assert.equal(misses(again.steps), '');
  const old = await c.ok(ctxs[0]!, ['--gc-keep-storage', String(limit)], at(T0 + 6 * HOUR));
  assert.match(misses(old.steps), /cache record missing \(pruned, or the previous build did not finish\)/);
  assert.ok(existsSync(c.mountData('mount0') + '/f'));
  await c.assertConsistent('builds after GC');
});

test('under a limit nothing else fits, GC removes cache mounts too, but never what the last build used', async (t) => {
  const c = await controlEnv('gc-tiny');
  t.after(() => c.env.cleanup());
  const ctxs = [0, 1, 2].map((i) => project(c, i));
  await c.ok(ctxs[0]!, [], at(T0));
  await c.ok(ctxs[1]!, [], at(T0 + HOUR));
  // The environment variable sets the limit just as the flag does.
  const r = await c.ok(ctxs[2]!, [], { ...at(T0 + 2 * HOUR), STRATA_GC_KEEP_STORAGE: '1' });
  assert.match(r.stderr, /^WARNING: store over 1B: removed \d+ least recently used record\(s\)/m);
  const left = await c.du();
  assert.deepEqual(left.filter((x) => x.type === 'exec.cachemount').map((m) => m.id), ['mount2']);
  assert.equal(described(left, '/big2').length, 1);
  assert.equal(described(left, '> /n2').length, 1);
  assert.equal(left.filter((x) => x.type === 'regular').length, 2);
  assert.equal(left.filter((x) => x.type === 'image').length, 1, 'the base layer the last build used');
  await c.assertConsistent('GC to 1 byte');
  const again = await c.ok(ctxs[2]!, ['--gc-keep-storage', '1'], at(T0 + 3 * HOUR));
  assert.equal(misses(again.steps), '');
  // A bad size is a clear error (strata reads it when GC runs: after a build that ran something).
  const bad = await c.build(ctxs[2]!, ['--gc-keep-storage', 'lots', '--no-cache'], at(T0 + 4 * HOUR));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^error: --gc-keep-storage lots: not a size$/m);
  assert.match(bad.stderr, /^hint: write bytes with a unit: 500MB, 10GB, 1\.5G$/m);
});
