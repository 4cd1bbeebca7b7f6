// Command-line cache flags are checked before anything is built, and their errors name the flag.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { controlEnv, type ControlEnv } from './support.js';

let t: ControlEnv;
before(async () => {
  t = await controlEnv('flags');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

test('bad --cache-ttl and --gc-keep-storage values fail up front, naming the flag', async () => {
  const ctx = t.env.context('flags', { Dockerfile: 'FROM busybox AS base\nRUN echo hi > /f\n' });
  const cases: [string[], RegExp][] = [
    [['--cache-ttl', '3q'], /^error: --cache-ttl 3q: "3q" is not a duration/m],
    [['--cache-ttl', '0s'], /^error: --cache-ttl 0s: a TTL must be longer than 0/m],
    [['--cache-ttl', 'nosuch=1h'], /^error: --cache-ttl nosuch=\.\.\.: the Dockerfile has no stage named "nosuch"\nhint: stages: base/m],
    [['--gc-keep-storage', '12X'], /^error: --gc-keep-storage 12X: not a size/m],
  ];
  for (const [args, message] of cases) {
    const r = await t.build(ctx, args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
    assert.doesNotMatch(r.stderr, /#\d+ \[base/, `${args.join(' ')}: nothing may run`);
  }
  const good = await t.build(ctx, ['--cache-ttl', 'base=1h']);
  assert.equal(good.code, 0, good.stderr);
});
