// A layer whose files are hard links to an older layer's files copies their tar entries from the
// older layer's tar (src/snapshot/tar-splice.ts). The blob must be exactly the one a plain diff
// writes, whatever the older tar holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkSync, lstatSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { setAttribute } from 'fs-xattr';
import { diffToLayer, type DiffOptions } from '../../src/snapshot/diff.js';
import type { SpliceSource } from '../../src/snapshot/tar-splice.js';
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

/**
 * In a temp dir: the older layer and its tar (written with `olderTarOpts`), the new upper linking
 * its files; `check` gets them and a function writing the upper's blob both ways (plain, spliced).
 */
async function withLayers(
  olderTarOpts: Partial<DiffOptions>,
  check: (t: {
    work: string;
    older: string;
    olderTar: string;
    upper: string;
    linked: Map<number, string>;
    both: (splice?: Partial<SpliceSource>) => Promise<{ plain: Awaited<ReturnType<typeof layer>>; spliced: Awaited<ReturnType<typeof layer>> }>;
  }) => Promise<void>,
): Promise<void> {
  const work = await tmpdir('strata-splice-');
  try {
    const older = path.join(work, 'older');
    const files = await olderLayer(older);
    const olderTar = path.join(work, 'older.tar');
    await layer(older, olderTar, olderTarOpts);
    const upper = path.join(work, 'upper');
    const linked = newUpper(upper, older, files);
    let n = 0;
    const both = async (splice: Partial<SpliceSource> = {}) => {
      n++;
      const plain = await layer(upper, path.join(work, `plain${n}.tar`));
      const spliced = await layer(upper, path.join(work, `spliced${n}.tar`), { splice: { layerDir: older, tar: olderTar, linked, ...splice } });
      assert.equal(plain.spliced, 0);
      assert.ok(spliced.bytes.equals(plain.bytes), 'the same blob either way');
      return { plain, spliced };
    };
    await check({ work, older, olderTar, upper, linked, both });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

test('linked files are copied from the older tar; the blob is the one a plain diff writes', async () => {
  await withLayers({}, async ({ both }) => {
    const { plain, spliced } = await both();
    // the empty file has no data to copy and big.bin is streamed from its file
    assert.equal(spliced.spliced, 4);
    assert.equal(spliced.diffId, plain.diffId);
  });
});

test('an older tar whose headers differ (other mtimes, xattrs) lends nothing, and the blob is still right', async () => {
  // written with SOURCE_DATE_EPOCH: every mtime in its headers is clamped
  await withLayers({ sourceDateEpoch: 1_000_000_000 }, async ({ both }) => {
    assert.equal((await both()).spliced.spliced, 0);
  });
  // an xattr set on the shared inode after the older tar was written changes the header too
  await withLayers({}, async ({ upper, both }) => {
    let xattrs = true;
    try {
      await setAttribute(path.join(upper, 'app/a.txt'), 'user.note', Buffer.from('x'));
    } catch {
      xattrs = false; // a filesystem without user xattrs
    }
    assert.equal((await both()).spliced.spliced, xattrs ? 3 : 4);
  });
});

test('a file the linker did not make (another inode at that path) is read from the upper', async () => {
  await withLayers({}, async ({ upper, linked, both }) => {
    // replaced after linking: same size and mtime, other content
    rmSync(path.join(upper, 'app/a.txt'));
    writeFileSync(path.join(upper, 'app/a.txt'), 'A\n');
    utimesSync(path.join(upper, 'app/a.txt'), 1_600_000_000, 1_600_000_000);
    utimesSync(path.join(upper, 'app'), 1_600_000_100, 1_600_000_100);
    // and a map entry naming the wrong path for an inode
    const wrong = new Map(linked);
    wrong.set(lstatSync(path.join(upper, 'app/b/c.txt')).ino, 'app/b/run.sh');
    const { plain, spliced } = await both({ linked: wrong });
    assert.equal(spliced.spliced, 2);
    assert.ok(plain.bytes.includes(Buffer.from('A\n')));
  });
});

test('a missing or unreadable older tar only turns splicing off', async () => {
  await withLayers({}, async ({ work, both }) => {
    assert.equal((await both({ tar: path.join(work, 'nope.tar') })).spliced.spliced, 0);
    const junk = path.join(work, 'junk.tar');
    writeFileSync(junk, Buffer.alloc(4096, 0x41));
    assert.equal((await both({ tar: junk })).spliced.spliced, 0);
  });
});
