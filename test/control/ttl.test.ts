// Per-step cache TTLs end to end: `RUN --cache-ttl=`, the `# strata:cache-ttl=` comment (RUN and
// COPY), `--cache-ttl DURATION` and `--cache-ttl STAGE=DURATION`. A hit older than its TTL misses
// with `expired (...)`; dependents rerun naming the parent, or stay cached by early cutoff when
// the rerun's output is identical (SOURCE_DATE_EPOCH). The store clock is STRATA_FAKE_NOW.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { controlEnv, misses, step, type ControlEnv } from './support.js';

let c: ControlEnv;
before(async () => {
  c = await controlEnv('ttl');
});
after(() => c.env.cleanup());

const HOUR = 3_600_000;
const T0 = Date.parse('2026-03-01T10:00:00Z');
/** The store clock at `ms`; identical mtimes (so identical layers) unless `sde` is false. */
const at = (ms: number, sde = true): Record<string, string> => ({ STRATA_FAKE_NOW: String(ms), ...(sde ? { SOURCE_DATE_EPOCH: '1700000000' } : {}) });

test('flag and comment forms: hits within the TTL, expired after it, early cutoff for dependents', async () => {
  const ctx = c.env.context('forms', {
    'data.txt': 'some data\n',
    Dockerfile: `FROM busybox
RUN --cache-ttl=24h echo fetched > /flag
RUN cat /flag > /after-flag
# strata:cache-ttl=2h
RUN echo fetched > /comment
RUN cat /comment > /after-comment
# strata:cache-ttl=90m
COPY data.txt /data.txt
RUN cat /data.txt > /after-copy
RUN echo no-ttl > /plain
`,
  });
  const first = await c.ok(ctx, [], at(T0));
  assert.equal(first.steps.filter((s) => s.cached).length, 0);

  const soon = await c.ok(ctx, [], at(T0 + 80 * 60_000));
  assert.equal(misses(soon.steps), '', 'within every TTL all steps hit');

  // 100 minutes: only the 90m COPY expired; what reads it is cut off (same file, same mtime).
  const copyExpired = await c.ok(ctx, [], at(T0 + 100 * 60_000));
  assert.equal(step(copyExpired.steps, 'COPY data.txt').miss, 'expired (cached 100m ago, ttl 90m)');
  const afterCopy = step(copyExpired.steps, 'RUN cat /data.txt');
  assert.ok(afterCopy.cached, misses(copyExpired.steps));
  assert.deepEqual(afterCopy.notes, ['[stage-0 6/8] COPY data.txt /data.txt reran with identical output (early cutoff)']);
  assert.equal(copyExpired.steps.filter((s) => !s.cached).length, 1, misses(copyExpired.steps));

  // 3 hours: the 2h comment-form RUN expired too (the COPY was refreshed 80 minutes ago).
  const commentExpired = await c.ok(ctx, [], at(T0 + 3 * HOUR));
  assert.equal(step(commentExpired.steps, 'RUN echo fetched > /comment').miss, 'expired (cached 3h ago, ttl 2h)');
  assert.ok(step(commentExpired.steps, 'COPY data.txt').cached, 'the COPY reran 80 minutes ago');
  assert.ok(step(commentExpired.steps, 'RUN cat /comment').cached);
  assert.match(step(commentExpired.steps, 'RUN cat /comment').notes.join('\n'), /RUN echo fetched > \/comment reran with identical output \(early cutoff\)/);
  assert.ok(step(commentExpired.steps, 'RUN --cache-ttl=24h').cached, 'the 24h step is still fresh');

  // 26 hours: the flag form expired; its dependent is cut off, the step without a TTL still hits.
  const flagExpired = await c.ok(ctx, [], at(T0 + 26 * HOUR));
  assert.equal(step(flagExpired.steps, 'RUN --cache-ttl=24h').miss, 'expired (cached 26h ago, ttl 24h)');
  const afterFlag = step(flagExpired.steps, 'RUN cat /flag');
  assert.ok(afterFlag.cached);
  assert.deepEqual(afterFlag.notes, ['[stage-0 2/8] RUN --cache-ttl=24h echo fetched > /flag reran with identical output (early cutoff)']);
  assert.ok(step(flagExpired.steps, 'RUN echo no-ttl').cached);

  // The rerun refreshed the record: 23 hours later the 24h step hits again.
  const refreshed = await c.ok(ctx, [], at(T0 + 49 * HOUR));
  assert.ok(step(refreshed.steps, 'RUN --cache-ttl=24h').cached, misses(refreshed.steps));
});

test('an expired step with new output makes its dependents rerun, naming the parent', async () => {
  const ctx = c.env.context('dependents', {
    Dockerfile: `FROM busybox
# strata:cache-ttl=1h
RUN cat /proc/sys/kernel/random/uuid > /stamp
RUN cat /stamp > /copy
RUN cat /copy > /copy2
`,
  });
  // Later than every other test's builds, so that `strata explain` (the latest build) is this one.
  const T1 = T0 + 1000 * HOUR;
  await c.ok(ctx, [], at(T1, false));
  const later = await c.ok(ctx, [], at(T1 + 3 * HOUR, false));
  assert.equal(step(later.steps, 'RUN cat /proc').miss, 'expired (cached 3h ago, ttl 1h)');
  assert.equal(step(later.steps, 'RUN cat /stamp').miss, 'parent step [stage-0 2/4] RUN cat /proc/sys/kernel/random/uuid > /stamp changed');
  assert.equal(step(later.steps, 'RUN cat /copy >').miss, 'parent step [stage-0 3/4] RUN cat /stamp > /copy changed');
  const explain = JSON.parse((await c.cli(['explain', '--format', 'json'])).stdout) as { steps: { instruction: string; reason: string }[] };
  assert.equal(explain.steps.find((s) => s.instruction.startsWith('RUN cat /proc'))?.reason, 'expired (cached 3h ago, ttl 1h)');
});

test('--cache-ttl DURATION covers every RUN (not COPY); --cache-ttl STAGE=DURATION one stage', async () => {
  const ctx = c.env.context('cli', {
    'f.txt': 'f\n',
    Dockerfile: `FROM busybox AS deps
RUN echo deps > /deps

FROM busybox
COPY f.txt /f.txt
COPY --from=deps /deps /deps
RUN cat /deps /f.txt > /final
`,
  });
  await c.ok(ctx, ['--cache-ttl', 'deps=30m'], at(T0));
  let r = await c.ok(ctx, ['--cache-ttl', 'deps=30m'], at(T0 + 20 * 60_000));
  assert.equal(misses(r.steps), '');
  r = await c.ok(ctx, ['--cache-ttl', 'deps=30m'], at(T0 + HOUR));
  assert.equal(step(r.steps, 'RUN echo deps').miss, 'expired (cached 1h ago, ttl 30m)');
  assert.ok(step(r.steps, 'RUN cat /deps').cached, 'the other stage has no TTL');
  assert.match(step(r.steps, 'COPY --from=deps').notes.join('\n'), /early cutoff/);

  // A default for every RUN: the final RUN was written 2h ago (T0) and expires; COPY never does.
  r = await c.ok(ctx, ['--cache-ttl', '90m'], at(T0 + 2 * HOUR));
  assert.equal(step(r.steps, 'RUN cat /deps').miss, 'expired (cached 2h ago, ttl 90m)');
  assert.ok(step(r.steps, 'COPY f.txt').cached);
  assert.ok(step(r.steps, 'RUN echo deps').cached, 'rerun an hour ago: within 90m');
  // A stage's own TTL wins over the default.
  r = await c.ok(ctx, ['--cache-ttl', '12h', '--cache-ttl', 'deps=15m'], at(T0 + 3 * HOUR));
  assert.equal(step(r.steps, 'RUN echo deps').miss, 'expired (cached 2h ago, ttl 15m)');
  assert.ok(step(r.steps, 'RUN cat /deps').cached);
});

test('a record written without any TTL expires under a later build\'s TTL', async () => {
  const ctx = c.env.context('later', {
    Dockerfile: `FROM busybox
RUN echo once > /once
`,
  });
  await c.ok(ctx, [], at(T0));
  // STRATA_FAKE_NOW also takes an ISO date.
  let r = await c.ok(ctx, [], { STRATA_FAKE_NOW: '2026-03-31T10:00:00Z', SOURCE_DATE_EPOCH: '1700000000' });
  assert.equal(misses(r.steps), '', 'no TTL: a month-old record still hits');
  r = await c.ok(ctx, ['--cache-ttl', '7d'], { STRATA_FAKE_NOW: '2026-03-31T10:00:00Z', SOURCE_DATE_EPOCH: '1700000000' });
  assert.equal(step(r.steps, 'RUN echo once').miss, 'expired (cached 30d ago, ttl 7d)');
  // The Dockerfile's own flag is just as retroactive: the same command (the same key) written
  // before the flag was added expires under it.
  const ctx2 = c.env.context('later2', { Dockerfile: 'FROM busybox\nRUN echo twice > /twice\n' });
  await c.ok(ctx2, [], at(T0));
  const withFlag = c.env.context('later3', { Dockerfile: 'FROM busybox\nRUN --cache-ttl=12h echo twice > /twice\n' });
  r = await c.ok(withFlag, [], at(T0 + 11 * HOUR));
  assert.equal(misses(r.steps), '', 'the record from the build without a TTL is 11h old');
  r = await c.ok(withFlag, [], at(T0 + 13 * HOUR));
  assert.equal(step(r.steps, 'RUN --cache-ttl=12h').miss, 'expired (cached 13h ago, ttl 12h)');
});

test('an instruction\'s own TTL wins over --cache-ttl', async () => {
  const ctx = c.env.context('precedence', {
    Dockerfile: `FROM busybox AS s
RUN --cache-ttl=7d echo long > /long
RUN echo short > /short
`,
  });
  await c.ok(ctx, [], at(T0));
  const r = await c.ok(ctx, ['--cache-ttl', '1h', '--cache-ttl', 's=2h'], at(T0 + 3 * HOUR));
  assert.ok(step(r.steps, 'RUN --cache-ttl=7d').cached, misses(r.steps));
  assert.equal(step(r.steps, 'RUN echo short').miss, 'expired (cached 3h ago, ttl 2h)');
});

test('bad durations fail before anything runs, naming the Dockerfile line', async () => {
  const cases: { df: string; line: number; text: RegExp }[] = [
    { df: 'FROM busybox\nRUN echo a\nRUN --cache-ttl=24x echo b\n', line: 3, text: /invalid --cache-ttl value "24x"/ },
    { df: 'FROM busybox\nRUN echo a\n# strata:cache-ttl=soon\nRUN echo b\n', line: 4, text: /invalid # strata:cache-ttl value "soon"/ },
    { df: 'FROM busybox\n# strata:cache-ttl=-5h\nCOPY Dockerfile /\n', line: 3, text: /must be positive/ },
    { df: 'FROM busybox\nRUN --cache-ttl=0 echo b\n', line: 2, text: /must be positive/ },
  ];
  for (const [i, k] of cases.entries()) {
    const ctx = c.env.context(`bad${i}`, { Dockerfile: k.df });
    const r = await c.build(ctx);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^error: Dockerfile:${k.line}: `, 'm'), r.stderr);
    assert.match(r.stderr, k.text);
    assert.match(r.stderr, /^hint: .*24h/m);
    assert.equal(r.steps.length, 0, 'nothing ran');
  }
  const ctx = c.env.context('badcli', { Dockerfile: 'FROM busybox AS x\nRUN echo a\n' });
  for (const flag of ['3q', 'x=3q']) {
    const r = await c.build(ctx, ['--cache-ttl', flag]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /"3q" is not a duration/);
    assert.match(r.stderr, /^hint: .*90s, 15m, 12h, 7d/m);
  }
});
