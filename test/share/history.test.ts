// Job A's step inputs travel with its exported cache, so job B on a fresh machine (no build of its
// own) names the input that changed instead of "no previous build".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { busyboxContext, machines, compilerDockerfile, expectOk, sources, stepsSummary } from './support.js';

test('a fresh machine explains its misses against the build that exported the cache', async (t) => {
  const [a, b, c] = machines(t, 'hist-a', 'hist-b', 'hist-c');
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const dir = join(a.root, 'exported');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max`]);

  // Job B: another machine, another checkout path, one source file edited.
  const edited = { ...files, 'src/unit2.c': 'int unit2(void) { return 22; }\n' };
  const r = await b.ok(b.context('checkout', edited), [...bb, '--cache-from', `type=local,src=${dir}`, '-o', 'type=cacheonly']);
  const copy = r.instructions.find((s) => s.name.includes('COPY src/'));
  assert.ok(copy && !copy.cached, stepsSummary(r));
  assert.match(copy.miss ?? '', /unit2\.c content changed/, stepsSummary(r));
  assert.doesNotMatch(stepsSummary(r), /no previous build/);
  const run = r.instructions.find((s) => s.name.includes('RUN --mount=type=cache'));
  assert.match(run?.miss ?? '', /parent step .*COPY src\/.* changed/, stepsSummary(r));
  assert.ok(r.instructions.find((s) => s.name.includes('WORKDIR'))?.cached, 'unchanged steps hit the imported records');

  // The imported build is listed as such; `explain` without an id is still B's own build.
  const ls = expectOk(await b.strata(['history', 'ls']), 'history ls').stdout;
  assert.match(ls, /^imported-\S+ +\S+ +imported /m);
  const ex = JSON.parse(expectOk(await b.strata(['explain', '--format', 'json']), 'explain').stdout) as { build: { status: string }; steps: { cached: boolean; reason: string }[] };
  assert.equal(ex.build.status, 'done');
  assert.ok(ex.steps.some((s) => /unit2\.c content changed/.test(s.reason)));

  // `strata cache export` outside a build carries the newest build too; `cache import` then a plain build.
  const dir2 = join(a.root, 'exported-cli');
  expectOk(await a.strata(['cache', 'export', `type=local,dest=${dir2}`]), 'cache export');
  expectOk(await c.strata(['cache', 'import', `type=local,src=${dir2}`]), 'cache import');
  const rc = await c.ok(c.context('ctx', edited), [...bb, '-o', 'type=cacheonly']);
  assert.match(rc.instructions.find((s) => s.name.includes('COPY src/'))?.miss ?? '', /unit2\.c content changed/, stepsSummary(rc));
});
