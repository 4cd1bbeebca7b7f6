// A rerun COPY hard-links its unchanged files from its previous layer; the store must not count those
// bytes twice (du and GC read each layer's disk_size): the layers' sizes add up to what the disk holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StrataEnv, expectOk } from '../build/harness.js';
import { ownDiskSize } from '../../src/cache/store.js';
import { diffToLayer } from '../../src/snapshot/diff.js';

const FILES: Record<string, string> = { Dockerfile: 'FROM scratch\nCOPY src /src\n' };
for (let f = 0; f < 40; f++) FILES[`src/f${f}.txt`] = `file ${f}\n`.repeat(2000);

const duBytes = (p: string) => Number(spawnSync('du', ['-sb', p], { encoding: 'utf8' }).stdout.split('\t')[0]);

test('layers that share hard-linked files are sized once between them', async (t) => {
  const env = new StrataEnv('strata-layer-size-');
  t.after(() => env.cleanup());
  const ctx = env.context('ctx', FILES);
  expectOk(await env.build(ctx, ['-o', 'type=cacheonly']), 'first build');
  writeFileSync(join(ctx, 'src/f7.txt'), 'changed\n');
  expectOk(await env.build(ctx, ['-o', 'type=cacheonly']), 'build after a one-file change');

  const layersDir = join(env.store, 'layers');
  const dirs = readdirSync(layersDir);
  assert.equal(dirs.length, 2, 'two COPY layers');
  const linked = dirs.some((d) => lstatSync(join(layersDir, d, 'src/f3.txt')).nlink > 1);
  assert.ok(linked, 'the rerun linked unchanged files (the case this test is about)');

  const db = new Database(join(env.store, 'index.db'), { readonly: true });
  const rows = db.prepare('SELECT disk_size FROM layers WHERE unpacked=1').all() as { disk_size: number }[];
  db.close();
  const recorded = rows.reduce((n, r) => n + r.disk_size, 0);
  // du of the parent counts each inode once; minus the `layers` directory entry itself.
  const onDisk = duBytes(layersDir) - lstatSync(layersDir).size;
  assert.equal(recorded, onDisk);
  const sizes = rows.map((r) => r.disk_size).sort((a, b) => a - b);
  assert.ok(sizes[0]! * 10 < sizes[1]!, `the rerun's layer owns only the changed file: ${sizes.join(', ')}`);
});

test('ownDiskSize counts a hard link inside one layer once, and a file shared with another layer not at all', (t) => {
  const env = new StrataEnv('strata-own-size-');
  t.after(() => env.cleanup());
  const a = join(env.root, 'a');
  const b = join(env.root, 'b');
  mkdirSync(a);
  mkdirSync(b);
  writeFileSync(join(a, 'one'), 'x'.repeat(1000));
  spawnSync('ln', [join(a, 'one'), join(a, 'two')]);
  writeFileSync(join(a, 'shared'), 'y'.repeat(5000));
  const before = ownDiskSize(a);
  assert.equal(before, duBytes(a), 'alone, the same as du -sb');
  spawnSync('ln', [join(a, 'shared'), join(b, 'shared')]);
  assert.equal(ownDiskSize(a), before - 5000);
  assert.equal(ownDiskSize(b), lstatSync(b).size);
});

test('a committed layer is sized from the diff\'s own walk, by the same rule as ownDiskSize', async (t) => {
  const env = new StrataEnv('strata-diff-size-');
  t.after(() => env.cleanup());
  const upper = join(env.root, 'upper');
  const other = join(env.root, 'other');
  mkdirSync(join(upper, 'd/e'), { recursive: true });
  mkdirSync(other);
  writeFileSync(join(upper, 'd/one'), 'x'.repeat(1000));
  spawnSync('ln', [join(upper, 'd/one'), join(upper, 'd/e/two')]);
  writeFileSync(join(upper, 'shared'), 'y'.repeat(5000));
  spawnSync('ln', [join(upper, 'shared'), join(other, 'shared')]);
  spawnSync('ln', ['-s', 'd/one', join(upper, 'link')]);
  spawnSync('mknod', [join(upper, 'gone'), 'c', '0', '0']); // a whiteout
  // an empty mount-point stub the diff drops, and the commit removes, before the size counts
  mkdirSync(join(upper, 'proc'));
  const r = await diffToLayer(upper, { lowers: [], out: join(env.root, 'layer.tar'), compression: 'none', pruneUpper: true });
  assert.equal(r.diskSize, ownDiskSize(upper));
  assert.equal(r.diskSize, duBytes(upper) - 5000, 'the file linked from elsewhere counts there');
});
