// A layer whose files are hard links to an older layer's files copies their tar entries from the
// older layer's tar (src/snapshot/tar-splice.ts). The blob must be exactly the one a plain diff
// writes, whatever the older tar holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkSync, lstatSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { setAttribute } from 'fs-xattr';
import { diffToLayer, type DiffOptions } from '../../src/snapshot/diff.js';
import { mkTree, tmpdir } from '../fileops/helpers.js';

const LONG = `${'d'.repeat(60)}/${'n'.repeat(70)}.txt`; // over ustar's 100-byte name: a pax path record

/** An older layer dir with small files, a long name, an executable and a file bigger than a tar chunk. */
async function olderLayer(dir: string): Promise<string[]> {
  await mkTree(dir, {
    'app/a.txt': 'a\n',
    'app/b/c.txt': 'c'.repeat(3000),
    'app/b/run.sh': { content: '#!/bin/sh\n', mode: 0o755 },
    [`app/${LONG}`]: 'long\n',
    'app/empty': '',
  });
  writeFileSync(path.join(dir, 'app/big.bin'), Buffer.alloc(1536 * 1024, 7));
  const files = ['app/a.txt', 'app/b/c.txt', 'app/b/run.sh', `app/${LONG}`, 'app/empty', 'app/big.bin'];
  let i = 0;
  for (const f of files) utimesSync(path.join(dir, f), 1_600_000_000 + i, 1_600_000_000 + i++);
  return files;
}

/** A new upper linking `files` from the older layer (as link-reuse does), plus one new file. */
function newUpper(upper: string, older: string, files: string[]): Map<number, string> {
  const linked = new Map<number, string>();
  for (const f of files) {
    mkdirSync(path.dirname(path.join(upper, f)), { recursive: true });
    linkSync(path.join(older, f), path.join(upper, f));
    linked.set(lstatSync(path.join(upper, f)).ino, f);
  }
  writeFileSync(path.join(upper, 'app/new.txt'), 'new\n');
  for (const d of ['app/b', `app/${path.dirname(LONG)}`, 'app', '']) utimesSync(path.join(upper, d), 1_600_000_100, 1_600_000_100);
  return linked;
}

async function layer(dir: string, out: string, extra: Partial<DiffOptions> = {}) {
  const r = await diffToLayer(dir, { lowers: [], out, compression: 'none', ...extra });
  return { ...r, bytes: readFileSync(out) };
}

test('linked files are copied from the older tar; the blob is the one a plain diff writes', async () => {
  const work = await tmpdir('strata-splice-');
  try {
    const older = path.join(work, 'older');
    const files = await olderLayer(older);
    const olderTar = path.join(work, 'older.tar');
    await layer(older, olderTar);
    const upper = path.join(work, 'upper');
    const linked = newUpper(upper, older, files);

    const plain = await layer(upper, path.join(work, 'plain.tar'));
    const spliced = await layer(upper, path.join(work, 'spliced.tar'), { splice: { layerDir: older, tar: olderTar, linked } });
    assert.equal(plain.spliced, 0);
    // the empty file has no data to copy and big.bin is streamed from its file
    assert.equal(spliced.spliced, 4);
    assert.equal(spliced.diffId, plain.diffId);
    assert.ok(spliced.bytes.equals(plain.bytes));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('an older tar whose headers differ (other mtimes, xattrs) lends nothing, and the blob is still right', async () => {
  const work = await tmpdir('strata-splice-');
  try {
    const older = path.join(work, 'older');
    const files = await olderLayer(older);
    // written with SOURCE_DATE_EPOCH: every mtime in its headers is clamped
    const olderTar = path.join(work, 'older.tar');
    await layer(older, olderTar, { sourceDateEpoch: 1_000_000_000 });
    const upper = path.join(work, 'upper');
    const linked = newUpper(upper, older, files);
    const plain = await layer(upper, path.join(work, 'plain.tar'));
    const spliced = await layer(upper, path.join(work, 'spliced.tar'), { splice: { layerDir: older, tar: olderTar, linked } });
    assert.equal(spliced.spliced, 0);
    assert.ok(spliced.bytes.equals(plain.bytes));

    // an xattr set on the shared inode after the older tar was written changes the header too
    const freshTar = path.join(work, 'fresh.tar');
    await layer(older, freshTar);
    let xattrs = true;
    try {
      await setAttribute(path.join(upper, 'app/a.txt'), 'user.note', Buffer.from('x'));
    } catch {
      xattrs = false; // a filesystem without user xattrs
    }
    const plain2 = await layer(upper, path.join(work, 'plain2.tar'));
    const spliced2 = await layer(upper, path.join(work, 'spliced2.tar'), { splice: { layerDir: older, tar: freshTar, linked } });
    assert.equal(spliced2.spliced, xattrs ? 3 : 4);
    assert.ok(spliced2.bytes.equals(plain2.bytes));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('a file the linker did not make (another inode at that path) is read from the upper', async () => {
  const work = await tmpdir('strata-splice-');
  try {
    const older = path.join(work, 'older');
    const files = await olderLayer(older);
    const olderTar = path.join(work, 'older.tar');
    await layer(older, olderTar);
    const upper = path.join(work, 'upper');
    const linked = newUpper(upper, older, files);
    // replaced after linking: same size and mtime, other content
    rmSync(path.join(upper, 'app/a.txt'));
    writeFileSync(path.join(upper, 'app/a.txt'), 'A\n');
    utimesSync(path.join(upper, 'app/a.txt'), 1_600_000_000, 1_600_000_000);
    utimesSync(path.join(upper, 'app'), 1_600_000_100, 1_600_000_100);
    // and a map entry naming the wrong path for an inode
    const c = lstatSync(path.join(upper, 'app/b/c.txt')).ino;
    const wrong = new Map(linked);
    wrong.set(c, 'app/b/run.sh');
    const plain = await layer(upper, path.join(work, 'plain.tar'));
    const spliced = await layer(upper, path.join(work, 'spliced.tar'), { splice: { layerDir: older, tar: olderTar, linked: wrong } });
    assert.equal(spliced.spliced, 2);
    assert.ok(spliced.bytes.equals(plain.bytes));
    assert.ok(plain.bytes.includes(Buffer.from('A\n')));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('a missing or unreadable older tar only turns splicing off', async () => {
  const work = await tmpdir('strata-splice-');
  try {
    const older = path.join(work, 'older');
    const files = await olderLayer(older);
    const upper = path.join(work, 'upper');
    const linked = newUpper(upper, older, files);
    const plain = await layer(upper, path.join(work, 'plain.tar'));
    const missing = await layer(upper, path.join(work, 'a.tar'), { splice: { layerDir: older, tar: path.join(work, 'nope.tar'), linked } });
    assert.equal(missing.spliced, 0);
    assert.ok(missing.bytes.equals(plain.bytes));
    const junk = path.join(work, 'junk.tar');
    writeFileSync(junk, Buffer.alloc(4096, 0x41));
    const garbage = await layer(upper, path.join(work, 'b.tar'), { splice: { layerDir: older, tar: junk, linked } });
    assert.equal(garbage.spliced, 0);
    assert.ok(garbage.bytes.equals(plain.bytes));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
