// Rebuilds answer an unchanged context selection from its recorded checksum; what that skips must
// not cost a missed change or an explanation: an edit that keeps size and mtime is caught by its
// ctime, a miss after recorded hits still names the file, and a build whose recorded file list is
// gone lists the files again.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { RACY_MS } from '../../src/cache/stat-cache-store.js';
import { cacheEnv, misses, step, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
const MTIME = 1_600_000_000;
before(async () => {
  t = await cacheEnv('context-records');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

const DOCKERFILE = `FROM busybox
COPY package.json /app/
COPY src/ /app/src/
RUN cat /app/src/lib/util.js > /util
`;

function files(): Record<string, string> {
  const f: Record<string, string> = { Dockerfile: DOCKERFILE, 'package.json': '{"name":"app"}\n', 'src/lib/util.js': 'export const x = 1;\n' };
  for (let i = 0; i < 50; i++) f[`src/m${i}.js`] = `export const m = ${i};\n`;
  return f;
}

function sql<T>(query: string): T[] {
  const db = new Database(join(t.env.store, 'index.db'));
  try {
    return db.prepare(query).all() as T[];
  } finally {
    db.close();
  }
}

test('an edit that keeps size and mtime misses after recorded hits, and the miss names the file', async () => {
  const ctx = t.env.context('ctx', files());
  const util = join(ctx, 'src/lib/util.js');
  // Whole seconds, so that the edit below can set the mtime back exactly.
  utimesSync(util, MTIME, MTIME);
  await sleep(RACY_MS + 50);
  await t.ok(ctx);
  const hit = await t.ok(ctx);
  assert.equal(misses(hit.instructions), '');
  assert.equal(hit.contextBytesRead, 0);
  assert.ok(sql('SELECT key FROM stat_selections').length >= 2, 'both COPY selections are recorded');

  const st = statSync(util);
  writeFileSync(util, 'export const x = 2;\n');
  utimesSync(util, MTIME, MTIME);
  assert.equal(statSync(util).size, st.size);
  assert.equal(statSync(util).mtimeMs, st.mtimeMs);
  const edited = await t.ok(ctx);
  assert.equal(step(edited.instructions, 'COPY src/').miss, 'src/lib/util.js content changed');
  assert.ok(step(edited.instructions, 'COPY package.json').cached);
  const ex = await t.explain();
  assert.equal(step(ex.steps, 'COPY src/').reason, 'src/lib/util.js content changed');

  await sleep(RACY_MS + 50);
  assert.equal(misses((await t.ok(ctx)).instructions), '');
  const again = await t.ok(ctx);
  assert.equal(misses(again.instructions), '');
  assert.equal(again.contextBytesRead, 0);
});

test('a recorded selection whose file list is missing from the history lists its files again', async () => {
  const ctx = t.env.context('ctx-lists', files());
  await sleep(RACY_MS + 50);
  await t.ok(ctx);
  assert.equal(misses((await t.ok(ctx)).instructions), '');
  const db = new Database(join(t.env.store, 'index.db'));
  db.prepare('DELETE FROM file_lists').run();
  db.close();
  const hit = await t.ok(ctx);
  assert.equal(misses(hit.instructions), '');
  assert.ok(sql('SELECT digest FROM file_lists').length >= 2, 'the lists are recorded again');

  writeFileSync(join(ctx, 'src/m7.js'), 'export const m = "seven";\n');
  const changed = await t.ok(ctx);
  assert.equal(step(changed.instructions, 'COPY src/').miss, 'src/m7.js content changed');
});
