// Cache TTLs: a hit older than the step's TTL is a miss (`expired`), and what depends on it reruns,
// or stays cached by early cutoff and says so. The store clock is moved with STRATA_FAKE_NOW.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { cacheEnv, misses, step, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
before(async () => {
  t = await cacheEnv('ttl');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

const HOUR = 3600_000;
const T0 = Date.parse('2026-03-01T10:00:00Z');
const at = (ms: number, sde = true) => ({ STRATA_FAKE_NOW: String(ms), ...(sde ? { SOURCE_DATE_EPOCH: '1700000000' } : {}) });

test('RUN --cache-ttl=1h and the comment form: hit within the TTL, expired after it', async () => {
  const ctx = t.env.context('ttl', {
    Dockerfile: `FROM busybox
RUN --cache-ttl=1h echo fetched > /flag-form
RUN cat /flag-form > /after-flag
# strata:cache-ttl=1h
RUN echo fetched > /comment-form
RUN cat /comment-form > /after-comment
RUN echo never-expires > /plain
`,
  });
  await t.ok(ctx, [], at(T0));

  const within = await t.ok(ctx, [], at(T0 + 50 * 60_000));
  assert.equal(misses(within.instructions), '', 'within the TTL every step hits');

  // Two hours later with identical output: both TTL steps rerun, their children are cut off.
  const later = await t.ok(ctx, [], at(T0 + 2 * HOUR));
  for (const name of ['RUN --cache-ttl=1h echo', 'RUN echo fetched > /comment-form']) {
    assert.match(step(later.instructions, name).miss ?? '', /^expired \(cached 2h ago, ttl 1h\)$/, name);
  }
  const afterFlag = step(later.instructions, 'RUN cat /flag-form');
  assert.ok(afterFlag.cached);
  assert.deepEqual(afterFlag.notes, ['[stage-0 2/6] RUN --cache-ttl=1h echo fetched > /flag-form reran with identical output (early cutoff)']);
  const afterComment = step(later.instructions, 'RUN cat /comment-form');
  assert.ok(afterComment.cached);
  assert.match(afterComment.notes.join(''), /^\[stage-0 4\/6\] RUN echo fetched > \/comment-form reran with identical output \(early cutoff\)$/);
  assert.ok(step(later.instructions, 'RUN echo never-expires').cached);
  const ex = await t.explain();
  assert.equal(step(ex.steps, 'RUN --cache-ttl=1h').reason, 'expired (cached 2h ago, ttl 1h)');
  assert.match(step(ex.steps, 'RUN cat /flag-form').note, /early cutoff/);

  // The rerun refreshed the records: 50 minutes after that is within the TTL again.
  const refreshed = await t.ok(ctx, [], at(T0 + 2 * HOUR + 50 * 60_000));
  assert.equal(misses(refreshed.instructions), '');
});

test('an expired step with different output makes its dependents rerun', async () => {
  const ctx = t.env.context('ttl-dep', {
    Dockerfile: `FROM busybox
# strata:cache-ttl=1h
RUN cat /proc/sys/kernel/random/uuid > /stamp
RUN cat /stamp > /stamp-copy
`,
  });
  await t.ok(ctx, [], at(T0, false));
  const later = await t.ok(ctx, [], at(T0 + 3 * HOUR, false));
  assert.equal(step(later.instructions, 'RUN cat /proc').miss, 'expired (cached 3h ago, ttl 1h)');
  assert.equal(step(later.instructions, 'RUN cat /stamp').miss, 'parent step [stage-0 2/3] RUN cat /proc/sys/kernel/random/uuid > /stamp changed');
});

test('--cache-ttl STAGE=DUR and a default --cache-ttl apply to RUN steps', async () => {
  const ctx = t.env.context('ttl-flag', {
    Dockerfile: `FROM busybox AS deps
RUN echo deps > /deps

FROM busybox
COPY --from=deps /deps /deps
RUN cat /deps > /final
`,
  });
  await t.ok(ctx, ['--cache-ttl', 'deps=30m'], at(T0));
  let r = await t.ok(ctx, ['--cache-ttl', 'deps=30m'], at(T0 + HOUR));
  assert.equal(step(r.instructions, 'RUN echo deps').miss, 'expired (cached 1h ago, ttl 30m)');
  assert.ok(step(r.instructions, 'RUN cat /deps').cached, 'other stages keep no TTL');
  r = await t.ok(ctx, ['--cache-ttl', '1d'], at(T0 + 2 * HOUR));
  assert.equal(misses(r.instructions), '');
  r = await t.ok(ctx, ['--cache-ttl', '1h'], at(T0 + 4 * HOUR));
  assert.match(step(r.instructions, 'RUN cat /deps').miss ?? '', /^expired \(cached 4h ago, ttl 1h\)$/);
});
