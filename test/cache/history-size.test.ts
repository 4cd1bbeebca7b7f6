// Build history keeps each step's file list once per selection, not once per build: a store that
// sees hundreds of rebuilds of a large context must not grow by the whole list every time.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { cacheEnv, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
before(async () => {
  t = await cacheEnv('history-size');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

test('file lists are stored once per selection and still explain a change', async () => {
  const files: Record<string, string> = { Dockerfile: 'FROM busybox\nCOPY src /src\n' };
  for (let i = 0; i < 300; i++) files[`src/file-${i}.txt`] = `content ${i}\n`;
  const ctx = t.env.context('big', files);
  for (let i = 0; i < 3; i++) await t.ok(ctx);

  const db = new Database(join(t.env.store, 'index.db'), { readonly: true });
  try {
    const lists = (db.prepare('SELECT COUNT(*) AS n FROM file_lists').get() as { n: number }).n;
    assert.equal(lists, 1, 'three builds of one selection keep one file list');
    const biggest = (db.prepare('SELECT MAX(LENGTH(inputs)) AS n FROM build_steps').get() as { n: number }).n;
    assert.ok(biggest < 4000, `a step's recorded inputs stay small (${biggest} bytes)`);
  } finally {
    db.close();
  }

  files['src/file-7.txt'] = 'changed\n';
  const changed = await t.ok(t.env.context('big', { 'src/file-7.txt': 'changed\n' }));
  const copy = changed.instructions.find((s) => s.name.includes('COPY src'));
  assert.equal(copy?.miss, 'src/file-7.txt content changed');
});
