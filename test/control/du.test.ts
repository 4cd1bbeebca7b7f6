// `strata du`: the JSON shape, sizes, record types (regular step results, image base layers,
// exec.cachemount cache mounts), each filter (type, id, until) alone and combined, --verbose, totals.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { controlEnv, described, type ControlEnv, type DuRecord } from './support.js';

let c: ControlEnv;
let records: DuRecord[];
const HOUR = 3_600_000;
let builtAt: number;

before(async () => {
  c = await controlEnv('du');
  const ctx = c.env.context('ctx', {
    Dockerfile: `FROM busybox
RUN head -c 300000 /dev/urandom > /big
RUN --mount=type=cache,target=/var/cache/du,id=du-cache head -c 50000 /dev/urandom > /var/cache/du/blob && echo small > /small
RUN --mount=type=cache,target=/root/.cache echo default id > /root/.cache/f
RUN true
`,
  });
  builtAt = Date.now();
  await c.ok(ctx);
  records = await c.du();
});
after(() => c.env.cleanup());

test('du --format json: one object per record with exactly the documented fields', () => {
  assert.ok(Array.isArray(records));
  for (const r of records) {
    assert.deepEqual(Object.keys(r).sort(), ['created', 'description', 'id', 'in_use', 'last_used', 'shared', 'size', 'type']);
    assert.equal(typeof r.id, 'string');
    assert.ok(['regular', 'image', 'exec.cachemount', 'source.local'].includes(r.type), r.type);
    assert.ok(Number.isInteger(r.size) && r.size >= 0, `${r.id} size ${r.size}`);
    assert.match(r.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.match(r.last_used, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Date.parse(r.last_used) >= Date.parse(r.created), `${r.id}: last used before created`);
    assert.ok(Date.parse(r.created) >= builtAt - 1000, 'times are when the build ran');
    assert.equal(r.in_use, false, 'no build is running');
    assert.equal(typeof r.shared, 'boolean');
  }
  const ids = records.map((r) => `${r.type}:${r.id}`);
  assert.equal(new Set(ids).size, ids.length, 'ids are unique');
});

test('a layer-producing step has its layer\'s size; a step adding nothing has size 0', () => {
  const [big] = described(records, 'RUN head -c 300000');
  assert.ok(big, JSON.stringify(records, null, 1));
  assert.equal(big.type, 'regular');
  // Random bytes do not compress: the blob alone is 300 kB, and the unpacked copy counts too.
  assert.ok(big.size > 300_000, `size ${big.size}`);
  assert.match(big.id, /^[0-9a-f]{12}$/);
  const [small] = described(records, 'RUN --mount=type=cache,target=/var/cache/du');
  assert.ok(small.size > 0 && small.size < 100_000, `the cache mount's 50 kB are not in the step's layer (${small.size})`);
  const [nothing] = described(records, 'RUN true');
  assert.equal(nothing.type, 'regular');
  assert.equal(nothing.size, 0);
  const base = records.filter((r) => r.type === 'image');
  assert.equal(base.length, 1, 'the busybox layer');
  assert.ok(base[0]!.size > 500_000);
  assert.match(base[0]!.description, /^layer sha256:[0-9a-f]{64}$/);
});

test('cache mounts are exec.cachemount records with the size of their contents', () => {
  const mounts = records.filter((r) => r.type === 'exec.cachemount');
  assert.deepEqual(mounts.map((m) => m.id).sort(), ['/root/.cache', 'du-cache']);
  const du = mounts.find((m) => m.id === 'du-cache')!;
  assert.ok(du.size >= 50_000 && du.size < 80_000, `size ${du.size}`);
  assert.equal(du.description, 'cache mount du-cache (sharing=shared, used by 1 build)');
  assert.equal(du.shared, true);
  assert.ok(mounts.find((m) => m.id === '/root/.cache')!.size > 0);
});

test('du --filter type=, id=, until= and their combinations', async () => {
  for (const type of ['regular', 'image', 'exec.cachemount'] as const) {
    const got = await c.du([`type=${type}`]);
    assert.deepEqual(got, records.filter((r) => r.type === type), type);
  }
  assert.deepEqual(await c.du(['type=source.local']), []);
  // Two types: either.
  assert.equal((await c.du(['type=image', 'type=exec.cachemount'])).length, 3);

  const [big] = described(records, 'RUN head -c 300000');
  assert.deepEqual(await c.du([`id=${big!.id}`]), [big]);
  assert.deepEqual(await c.du([`id=${big!.id.slice(0, 6)}`]), records.filter((r) => r.id.startsWith(big!.id.slice(0, 6))), 'an id prefix');
  assert.deepEqual((await c.du(['id=du-cache'])).map((r) => r.id), ['du-cache']);
  assert.deepEqual(await c.du(['id=du-']), [], 'a cache mount matches only by its whole id, as in prune');
  assert.deepEqual(await c.du(['id=du-cache', 'type=regular']), [], 'filters of different keys all apply');
  assert.deepEqual(await c.du(['id=nothing-like-this']), []);

  // until=DUR: records not used for at least DUR.
  assert.deepEqual(await c.du(['until=1h']), [], 'everything was used just now');
  const later = { STRATA_FAKE_NOW: String(Date.now() + 2 * HOUR) };
  assert.deepEqual(await c.du(['until=1h'], later), records);
  assert.deepEqual(await c.du(['until=3h'], later), []);
  assert.deepEqual(await c.du(['until=90m', 'type=exec.cachemount'], later), records.filter((r) => r.type === 'exec.cachemount'));
});

test('du rejects unknown filters and types, saying what is accepted', async () => {
  for (const [f, hint] of [
    ['type=layer', /types: regular, image, exec\.cachemount, source\.local/],
    ['color=red', /filters: until=DURATION, id=ID, type=TYPE/],
    ['until=soon', /90s, 15m/],
  ] as const) {
    const r = await c.env.strata(['du', '--filter', f]);
    assert.equal(r.code, 1, f);
    assert.match(r.stderr, /^error: /);
    assert.match(r.stderr, hint);
  }
});

test('du table and --verbose: every record, and totals that add up', async () => {
  const table = (await c.cli(['du'])).stdout;
  for (const r of records) assert.match(table, new RegExp(`^${r.id.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} +${r.type.replace('.', '\\.')} `, 'm'));
  const total = records.reduce((n, r) => n + r.size, 0);
  const m = /^Total:\t+(\S+)$/m.exec(table);
  assert.ok(m, table);
  // formatSize: decimal units, 3 significant digits.
  const value = Number(/^[\d.]+/.exec(m[1]!)![0]) * { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[/[a-zA-Z]+$/.exec(m[1]!)![0] as 'B']!;
  assert.ok(Math.abs(value - total) / total < 0.01, `${m[1]} vs ${total}`);
  assert.match(table, /^Reclaimable:\t+\S+$/m);

  const verbose = (await c.cli(['du', '--verbose'])).stdout;
  const blocks = verbose.split('\n\n').filter((b) => b.startsWith('ID:'));
  assert.equal(blocks.length, records.length);
  for (const r of records) {
    const block = blocks.find((b) => b.startsWith(`ID:\t\t${r.id}\n`));
    assert.ok(block, r.id);
    assert.match(block, new RegExp(`^Type:\\t+${r.type.replace('.', '\\.')}$`, 'm'));
    assert.match(block, new RegExp(`^Created at:\\t+${r.created}$`, 'm'));
    assert.match(block, /^In use:\t+false$/m);
    assert.ok(block.includes(`Description:\t${r.description}`));
  }
  const filtered = (await c.cli(['du', '--verbose', '--filter', 'type=exec.cachemount'])).stdout;
  assert.equal(filtered.split('\n\n').filter((b) => b.startsWith('ID:')).length, 2);
});

/** Bytes under the store's blobs, layers and mounts (what du's records stand for). */
function diskBytes(store: string): number {
  const r = spawnSync('du', ['-sbc', ...['blobs', 'layers', 'mounts'].map((d) => join(store, d))], { encoding: 'utf8' });
  return Number(/^(\d+)\ttotal$/m.exec(r.stdout)![1]);
}

test('du counts bytes on this disk: layers an imported cache lists but nobody fetched take none', async (t) => {
  const exported = join(c.env.root, 'exported-cache');
  const ctx = c.env.context('lazy', { Dockerfile: 'FROM busybox\nRUN head -c 150000 /dev/urandom > /lazy\n' });
  await c.ok(ctx, ['--cache-to', `type=local,dest=${exported},mode=max`]);
  assert.ok(sum(await c.du()) <= diskBytes(c.env.store), 'the original store');

  const other = await controlEnv('du-lazy');
  t.after(() => other.env.cleanup());
  const r = await other.ok(ctx, ['--cache-from', `type=local,src=${exported}`, '-o', 'type=cacheonly']);
  assert.ok(r.steps.every((s) => s.cached), 'served from the imported cache without fetching');
  const lazy = await other.du();
  const [rec] = described(lazy, 'RUN head -c 150000');
  assert.ok(rec, JSON.stringify(lazy));
  assert.equal(rec.size, 0, 'its layer is still in the exported cache');
  assert.equal(sum(lazy.filter((x) => x.type !== 'exec.cachemount')), 0);
  // A step on top needs the chain on disk: now it counts.
  const child = other.env.context('lazy-child', { Dockerfile: 'FROM busybox\nRUN head -c 150000 /dev/urandom > /lazy\nRUN wc -c < /lazy > /n\n' });
  await other.ok(child, ['--cache-from', `type=local,src=${exported}`]);
  const fetched = await other.du();
  assert.ok(described(fetched, 'RUN head -c 150000')[0]!.size > 150_000);
  assert.ok(sum(fetched) <= diskBytes(other.env.store), `${sum(fetched)} > ${diskBytes(other.env.store)}`);
});

const sum = (rs: DuRecord[]) => rs.reduce((n, r) => n + r.size, 0);
