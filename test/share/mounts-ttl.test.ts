// Cache mounts at import: seeded only when there is no local one or it is older, chosen with
// mounts=none|all|ID, and never part of a step's key. Records keep their creation time across
// machines, so a RUN --cache-ttl expires on B as it would on A.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, machines, allCached, busyboxContext, compilerDockerfile, expectOk, objectsFound, sources, stepsSummary } from './support.js';

const T0 = '2031-03-01T10:00:00.000Z';
const T1 = '2031-03-01T11:00:00.000Z';
const at = (iso: string) => ({ STRATA_FAKE_NOW: iso });

/** The files of cache mount `id` in machine `m` (undefined: no such mount). */
async function mountFiles(m: Machine, id: string): Promise<string[] | undefined> {
  const r = await m.strata(['mount', 'path', id]);
  if (r.code !== 0) return undefined;
  const dir = r.stdout.trim();
  return existsSync(dir) ? readdirSync(dir).sort() : undefined;
}

/** A Dockerfile whose only RUN drops a marker file into cache mount cc. */
const markerDockerfile = (name: string) => `FROM busybox\nRUN --mount=type=cache,id=cc,target=/cache touch /cache/${name}\n`;

test('cache mount seeding: a newer local mount is kept, an older one replaced; mounts=none and mounts=ID choose', async (t) => {
  const machines: Machine[] = [];
  const mk = (n: string) => {
    const m = new Machine(n);
    machines.push(m);
    return m;
  };
  t.after(() => machines.forEach((m) => m.cleanup()));
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };

  // A exports its compiler cache (3 objects) at T0 and again, from another store, at T1.
  const a0 = mk('a0');
  const early = join(a0.root, 'early');
  await a0.ok(a0.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${early},mode=max,mounts=all`], at(T0));
  const a1 = mk('a1');
  const late = join(a1.root, 'late');
  await a1.ok(a1.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${late},mode=max,mounts=all`], at(T1));
  const aObjects = (await mountFiles(a0, 'cc'))!;
  assert.equal(aObjects.length, 3);
  assert.equal((await a0.cacheLs(early)).mounts[0]!.lastUsed, Date.parse(T0));

  // B used its own cc at T1: A's T0 mount is older and must not replace it.
  const b = mk('b');
  await b.ok(b.context('marker', { Dockerfile: markerDockerfile('b-local') }), bb, at(T1));
  const imp = expectOk(await b.strata(['cache', 'import', `type=local,src=${early}`]), 'cache import');
  assert.match(imp.stdout, /cache mounts seeded: none/);
  assert.deepEqual(await mountFiles(b, 'cc'), ['b-local']);

  // C used its cc at T0: A's T1 mount is newer and replaces it.
  const c = mk('c');
  await c.ok(c.context('marker', { Dockerfile: markerDockerfile('c-local') }), bb, at(T0));
  const imp2 = expectOk(await c.strata(['cache', 'import', `type=local,src=${late}`]), 'cache import');
  assert.match(imp2.stdout, /cache mounts seeded: cc/);
  assert.deepEqual(await mountFiles(c, 'cc'), aObjects);
  // Importing the same again seeds nothing (equal last use).
  assert.match(expectOk(await c.strata(['cache', 'import', `type=local,src=${late}`]), 'import again').stdout, /cache mounts seeded: none/);

  // D has no mount: mounts=none and mounts=other leave it absent, mounts=cc seeds it.
  const d = mk('d');
  assert.match(expectOk(await d.strata(['cache', 'import', `type=local,src=${late},mounts=none`]), 'mounts=none').stdout, /seeded: none/);
  assert.equal(await mountFiles(d, 'cc'), undefined);
  assert.match(expectOk(await d.strata(['cache', 'import', `type=local,src=${late},mounts=other`]), 'mounts=other').stdout, /seeded: none/);
  assert.equal(await mountFiles(d, 'cc'), undefined);
  assert.match(expectOk(await d.strata(['cache', 'import', `type=local,src=${late},mounts=cc`]), 'mounts=cc').stdout, /seeded: cc/);
  assert.deepEqual(await mountFiles(d, 'cc'), aObjects);
  // In a build, --cache-from with mounts=none imports the records but no mount.
  const e = mk('e');
  const r = await e.ok(e.context('ctx', files), [...bb, '--cache-from', `type=local,src=${late},mounts=none`, '-o', 'type=cacheonly']);
  assert.ok(allCached(r), stepsSummary(r));
  assert.equal(await mountFiles(e, 'cc'), undefined);
});

test('a fresher imported cache mount never invalidates a step', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  // B builds first (T0) with a compiler cache of its own: 3 objects from other sources.
  const ctxB = b.context('ctx', files);
  await b.ok(b.context('other', { Dockerfile: compilerDockerfile('busybox'), ...sources(3, 'other') }), bb, at(T0));
  const first = await b.ok(ctxB, bb, at(T0));
  assert.equal(objectsFound(first), 0);
  const keysBefore = (await b.cacheLs(await exportAll(b, 'before'))).records.map((r) => r.key).sort();
  const mountBefore = (await mountFiles(b, 'cc'))!;
  assert.equal(mountBefore.length, 6);

  // A builds the same at T1 with a compiler cache holding other objects too, and exports.
  await a.ok(a.context('extra', { Dockerfile: compilerDockerfile('busybox'), ...sources(2, 'extra') }), bb, at(T1));
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max,mounts=all`], at(T1));
  const aMount = (await mountFiles(a, 'cc'))!;
  assert.notDeepEqual(aMount, mountBefore);

  // B rebuilds with A's cache (mounts=all: seeded although no step runs): the newer mount is
  // seeded, and every step stays a hit.
  const again = await b.ok(ctxB, [...bb, '--cache-from', `type=local,src=${dir},mounts=all`], at(T1));
  assert.match(again.stderr, /cache mounts seeded: cc/);
  assert.deepEqual(await mountFiles(b, 'cc'), aMount, 'B now has A\'s mount');
  assert.ok(allCached(again), stepsSummary(again));
  // ...and its records are the ones it had (the same keys): the mount is not part of any key.
  const keysAfter = (await b.cacheLs(await exportAll(b, 'after'))).records.map((r) => r.key).sort();
  assert.deepEqual(keysAfter.filter((k) => keysBefore.includes(k)), keysBefore);
});

async function exportAll(m: Machine, name: string): Promise<string> {
  const dir = join(m.root, `export-${name}`);
  expectOk(await m.strata(['cache', 'export', `type=local,dest=${dir}`]), 'cache export');
  return dir;
}

test('a record keeps its creation time across machines: RUN --cache-ttl expires on B by A\'s clock', async (t) => {
  const a = new Machine('a');
  t.after(() => a.cleanup());
  const bb = await busyboxContext();
  const files = { Dockerfile: 'FROM busybox\nRUN --cache-ttl=1h echo fetched > /deps.txt\nRUN echo built > /app.txt\n' };
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max`], at(T0));
  const plain = { Dockerfile: 'FROM busybox\nRUN echo plain > /plain.txt\n' };
  await a.ok(a.context('plain', plain), [...bb, '--cache-to', `type=local,dest=${dir},mode=max`], at(T0));
  const index = await a.cacheLs(dir);
  assert.ok(index.records.length === 3 && index.records.every((r) => r.created === Date.parse(T0)), JSON.stringify(index.records));

  const run = async (name: string, now: string, extra: string[] = [], ctxFiles: Record<string, string> = files) => {
    const m = new Machine(name);
    t.after(() => m.cleanup());
    // The import itself happens at `now`: a record must not count from then.
    return m.ok(m.context('ctx', ctxFiles), [...bb, '--cache-from', `type=local,src=${dir}`, '-o', 'type=cacheonly', ...extra], at(now));
  };
  const within = await run('b-30m', '2031-03-01T10:30:00.000Z');
  assert.ok(allCached(within), stepsSummary(within));

  const expired = await run('b-2h', '2031-03-01T12:00:00.000Z');
  const ttlStep = expired.instructions.find((s) => s.name.includes('--cache-ttl=1h'));
  assert.ok(ttlStep && !ttlStep.cached, stepsSummary(expired));
  assert.match(ttlStep.miss ?? '', /^expired \(cached 2h.* ago, ttl 1h/);

  // The --cache-ttl flag of the build applies the same way to every RUN.
  const later = expired.instructions.find((s) => s.name.includes('built'));
  assert.ok(later?.cached || later?.miss !== undefined, stepsSummary(expired));

  // The build's --cache-ttl flag applies the same way to a RUN without its own.
  const flagHit = await run('b-flag-hit', '2031-03-01T12:00:00.000Z', ['--cache-ttl', '3h'], plain);
  assert.ok(allCached(flagHit), stepsSummary(flagHit));
  const flag = await run('b-flag', '2031-03-01T12:00:00.000Z', ['--cache-ttl', '90m'], plain);
  assert.equal(flag.instructions.length, 1);
  assert.match(flag.instructions[0]!.miss ?? '', /^expired \(cached 2h.* ago, ttl 90m\)/, stepsSummary(flag));
});
