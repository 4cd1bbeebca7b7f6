// A build's --cache-from (without mounts=) seeds an imported cache mount when one of its steps
// uses it, and says at its end which mounts no step used and so were not seeded; mounts=all seeds
// them all at once as before, and `strata cache import` seeds every one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, machines, allCached, busyboxContext, compilerDockerfile, expectOk, objectsFound, runStep, sources, stepsSummary } from './support.js';

async function mountFiles(m: Machine, id: string): Promise<string[] | undefined> {
  const r = await m.strata(['mount', 'path', id]);
  if (r.code !== 0) return undefined;
  const dir = r.stdout.trim();
  return existsSync(dir) ? readdirSync(dir).sort() : undefined;
}

/** Job A: the compiler project built once, its cache exported with every mount (cc: 3 objects). */
async function jobA(a: Machine) {
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max,mounts=all`]);
  const aObjects = (await mountFiles(a, 'cc'))!;
  return { bb, files, dir, aObjects };
}

const NOT_SEEDED = /cache mounts not seeded, as no step that ran used them: cc \(`strata cache import type=local,src=[^`]+` seeds them\)/;

test('--cache-from: a mount no step runs with is not seeded and is named at the end; a step that uses it gets it whole', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const { bb, files, dir, aObjects } = await jobA(a);
  assert.equal(aObjects.length, 3);

  // Every step is a hit: the compiler's mount is not needed, so it is not unpacked.
  const ctxB = b.context('ctx', files);
  const hit = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir}`]);
  assert.ok(allCached(hit), stepsSummary(hit));
  assert.match(hit.stderr, /imported cache: 5 new records, .* cache mounts seeded: cc \(on use\)/);
  assert.match(hit.stderr, NOT_SEEDED);
  assert.equal(await mountFiles(b, 'cc'), undefined, 'no mount cc in B');

  // A one-file change: the compiler runs, its mount is seeded first, and it finds A's objects.
  writeFileSync(join(ctxB, 'src', 'unit2.c'), 'int unit2(void) { return 22; }\n');
  const changed = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir}`]);
  const run = runStep(changed);
  assert.ok(run && !run.cached, stepsSummary(changed));
  assert.equal(objectsFound(changed), 2, JSON.stringify(run?.logs));
  assert.doesNotMatch(changed.stderr, /not seeded/);
  const bObjects = (await mountFiles(b, 'cc'))!;
  assert.equal(bObjects.length, 4, 'A\'s three objects and the new one');
  for (const o of aObjects) assert.ok(bObjects.includes(o), o);
});

test('--cache-from with mounts=all seeds every mount at once, even when no step uses it; cache import seeds them too', async (t) => {
  const [a, b, c] = machines(t, 'a', 'b', 'c');
  const { bb, files, dir, aObjects } = await jobA(a);

  const hit = await b.ok(b.context('ctx', files), [...bb, '--cache-from', `type=local,src=${dir},mounts=all`]);
  assert.ok(allCached(hit), stepsSummary(hit));
  assert.match(hit.stderr, /cache mounts seeded: cc$/m);
  assert.doesNotMatch(hit.stderr, /not seeded/);
  assert.deepEqual(await mountFiles(b, 'cc'), aObjects);

  const imp = expectOk(await c.strata(['cache', 'import', `type=local,src=${dir}`]), 'cache import');
  assert.match(imp.stdout, /cache mounts seeded: cc$/m);
  assert.doesNotMatch(imp.stderr, /not seeded/);
  assert.deepEqual(await mountFiles(c, 'cc'), aObjects);
});

test('--cache-from: a damaged tarball of a mount a step uses is refused when the step starts; the step runs with an empty mount', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const { bb, files, dir } = await jobA(a);
  const mount = (await a.cacheLs(dir)).mounts[0]!;
  const { readFileSync } = await import('node:fs');
  const blob = join(dir, 'blobs', 'sha256', mount.digest.slice(7));
  const bytes = readFileSync(blob);
  bytes[Math.floor(bytes.length / 2)] ^= 0xff;
  writeFileSync(blob, bytes);

  const ctxB = b.context('ctx', { ...files, 'src/unit1.c': 'int unit1(void) { return 11; }\n' });
  const r = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir}`]);
  const run = runStep(r);
  assert.ok(run && !run.cached, stepsSummary(r));
  assert.match(r.stderr, new RegExp(`cache mount cc not seeded: .*${mount.digest}.*does not match its digest`));
  assert.equal(objectsFound(r), 0, 'the step saw none of the damaged tarball');
});

test('--cache-from then --cache-to mounts=all: a mount no step used still travels on, whole', async (t) => {
  const [a, b, c] = machines(t, 'a', 'b', 'c');
  const { bb, files, dir: dirA, aObjects } = await jobA(a);

  // B hits every step (cc is never used), and passes the cache on, as chained CI jobs do.
  const dirB = join(b.root, 'cache');
  const hit = await b.ok(b.context('ctx', files), [...bb, '--cache-from', `type=local,src=${dirA}`, '--cache-to', `type=local,dest=${dirB},mode=max,mounts=all`]);
  assert.ok(allCached(hit), stepsSummary(hit));
  assert.match(hit.stderr, /exported cache to .*: \d+ records, 1 cache mount\(s\)/);
  assert.deepEqual((await b.cacheLs(dirB)).mounts.map((m) => m.id), ['cc']);

  const imp = expectOk(await c.strata(['cache', 'import', `type=local,src=${dirB}`]), 'cache import');
  assert.match(imp.stdout, /cache mounts seeded: cc$/m);
  assert.deepEqual(await mountFiles(c, 'cc'), aObjects);
});
