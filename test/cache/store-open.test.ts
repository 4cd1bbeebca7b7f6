// Opening the store while another process holds the index's write lock: SQLite refuses the switch of a
// new database to WAL at once (no busy wait), which made one of two concurrent first builds fail with
// "database is locked". Store.open must wait for the lock instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/cache/store.js';

const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');

// A second process creates index.db in SQLite's default rollback mode, takes the write lock and keeps
// it for a moment, as a concurrent first build does while it sets the store up.
const HOLDER = `
const Database = require(process.argv[1]);
const db = new Database(process.argv[2]);
db.exec('CREATE TABLE IF NOT EXISTS held (a)');
db.exec('BEGIN IMMEDIATE');
db.exec('INSERT INTO held VALUES (1)');
process.stdout.write('held\\n');
setTimeout(() => { db.exec('COMMIT'); db.close(); }, 700);
`;

test('Store.open waits for another process that holds the write lock of a new index', async () => {
  const root = mkdtempSync(join(tmpdir(), 'strata-store-open-'));
  try {
    mkdirSync(root, { recursive: true });
    const holder = spawn(process.execPath, ['-e', HOLDER, sqlite, join(root, 'index.db')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    holder.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => holder.on('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      holder.stdout.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`lock holder exited early (${code}): ${stderr}`)));
    });

    const store = Store.open(root);
    try {
      assert.equal(String(store.db.pragma('journal_mode', { simple: true })).toLowerCase(), 'wal');
      store.setImage('demo:latest', `sha256:${'a'.repeat(64)}`, `sha256:${'b'.repeat(64)}`);
      assert.equal(store.image('demo:latest')?.manifestDigest, `sha256:${'a'.repeat(64)}`);
      const held = store.db.prepare('SELECT count(*) AS n FROM held').get() as { n: number };
      assert.equal(held.n, 1, "the other process's committed row is there: nothing was lost");
    } finally {
      store.close();
    }
    assert.equal(await exited, 0, stderr);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
