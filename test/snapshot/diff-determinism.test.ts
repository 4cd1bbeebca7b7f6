import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkSync, mkdirSync, readFileSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setAttributeSync } from 'fs-xattr';
import { extractLayer } from '../../src/snapshot/extract.js';
import { compressLayer, diffToLayer, type LayerCompression } from '../../src/snapshot/diff.js';
import { mountOverlay, unmountOverlay } from '../../src/snapshot/overlay.js';
import { buildTar, isRoot, parseTar, sh, streamOf, tempDir } from './helpers.js';

const skip = !isRoot && 'needs root';
const OLD = 1_000_000_000;
const EPOCH = 1_500_000_000;

/** An upper with every kind of change, some of it older than EPOCH. */
async function makeUpper(dir: string): Promise<{ upper: string; lowers: string[] }> {
  const lower = join(dir, 'lower');
  await extractLayer(
    streamOf(
      await buildTar([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/a', data: 'a' },
        { name: 'etc/b', data: 'b' },
        { name: 'var/', type: 'directory' },
        { name: 'var/lib/', type: 'directory' },
        { name: 'var/lib/x', data: 'x' },
      ]),
    ),
    lower,
    { label: 'lower' },
  );
  const upper = join(dir, 'upper');
  const m = join(dir, 'merged');
  await mountOverlay({ lowers: [lower], upper, work: join(dir, 'work'), target: m });
  try {
    unlinkSync(join(m, 'etc/a'));
    writeFileSync(join(m, 'etc/b'), 'changed');
    rmSync(join(m, 'var/lib'), { recursive: true });
    mkdirSync(join(m, 'var/lib'));
    writeFileSync(join(m, 'var/lib/y'), 'y'.repeat(100_000));
    mkdirSync(join(m, 'app/src'), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(m, `app/src/f${String(i).padStart(2, '0')}`), `file ${i}\n`.repeat(i * 10));
    linkSync(join(m, 'app/src/f01'), join(m, 'app/f01-link'));
    writeFileSync(join(m, 'app/old'), 'old');
    setAttributeSync(join(m, 'app/old'), 'user.k', 'v');
    utimesSync(join(m, 'app/old'), OLD, OLD);
    writeFileSync(join(m, `app/${'long'.repeat(40)}`), 'long name');
  } finally {
    await unmountOverlay(m);
  }
  return { upper, lowers: [lower] };
}

test('diffToLayer writes the same bytes for the same upper, whatever the compression', { skip }, async () => {
  const t = tempDir('determinism');
  try {
    const { upper, lowers } = await makeUpper(t.dir);
    // a copy of the upper has other inode numbers and directory order but the same content
    sh(`cp -a ${upper} ${t.dir}/upper-copy`);
    const diffIds = new Set<string>();
    for (const compression of ['gzip', 'zstd', 'none'] as LayerCompression[]) {
      const digests = new Set<string>();
      for (const [i, source] of [upper, upper, join(t.dir, 'upper-copy')].entries()) {
        const out = join(t.dir, `${compression}-${i}`);
        const r = await diffToLayer(source, { lowers, out, compression });
        digests.add(r.digest);
        diffIds.add(r.diffId);
      }
      assert.equal(digests.size, 1, `${compression}: ${[...digests].join(' ')}`);
      assert.deepEqual(readFileSync(join(t.dir, `${compression}-0`)), readFileSync(join(t.dir, `${compression}-2`)));
    }
    assert.equal(diffIds.size, 1, 'one uncompressed tar behind all blobs');
  } finally {
    t.cleanup();
  }
});

test('diffToLayer clamps mtimes to sourceDateEpoch and stays deterministic', { skip }, async () => {
  const t = tempDir('sde');
  try {
    const { upper, lowers } = await makeUpper(t.dir);
    const plain = await diffToLayer(upper, { lowers, out: join(t.dir, 'plain'), compression: 'gzip' });
    const a = await diffToLayer(upper, { lowers, out: join(t.dir, 'a'), compression: 'gzip', sourceDateEpoch: EPOCH });
    const b = await diffToLayer(upper, { lowers, out: join(t.dir, 'b'), compression: 'gzip', sourceDateEpoch: EPOCH });
    const z1 = await diffToLayer(upper, { lowers, out: join(t.dir, 'z1'), compression: 'zstd', sourceDateEpoch: EPOCH });
    const z2 = await diffToLayer(upper, { lowers, out: join(t.dir, 'z2'), compression: 'zstd', sourceDateEpoch: EPOCH });
    assert.equal(a.digest, b.digest);
    assert.equal(z1.digest, z2.digest);
    assert.equal(a.diffId, z1.diffId);
    assert.notEqual(a.diffId, plain.diffId);

    const entries = await parseTar(readFileSync(join(t.dir, 'a')));
    const plainEntries = await parseTar(readFileSync(join(t.dir, 'plain')));
    assert.equal(entries.length, plainEntries.length);
    for (const [i, e] of entries.entries()) {
      const before = plainEntries[i]!;
      assert.equal(e.name, before.name);
      assert.equal(e.mtime, Math.min(before.mtime, EPOCH), e.name);
      assert.ok(!('mtime' in e.pax) && !('atime' in e.pax) && !('ctime' in e.pax), e.name);
    }
    const old = entries.find((e) => e.name === 'app/old')!;
    assert.equal(old.mtime, OLD);
    assert.equal(old.pax['SCHILY.xattr.user.k'], 'v');
    assert.equal(entries.find((e) => e.name === 'app/src/f02')!.mtime, EPOCH);
    assert.ok(plainEntries.find((e) => e.name === 'app/src/f02')!.mtime > EPOCH);
    // whole seconds only, even without an epoch
    for (const e of plainEntries) assert.ok(Number.isInteger(e.mtime), e.name);
    // the first name in path order carries the data, later names link to it
    assert.equal(entries.find((e) => e.name === 'app/f01-link')?.type, 'file');
    assert.equal(entries.find((e) => e.name === 'app/src/f01')?.type, 'link');
    assert.equal(entries.find((e) => e.name === 'app/src/f01')?.linkname, 'app/f01-link');
    assert.equal(entries.find((e) => e.name === `app/${'long'.repeat(40)}`)?.data.toString(), 'long name');
  } finally {
    t.cleanup();
  }
});

test('compressLayer turns an uncompressed diff into the blob diffToLayer writes directly', { skip }, async () => {
  const t = tempDir('compress-later');
  try {
    const { upper, lowers } = await makeUpper(t.dir);
    const plain = await diffToLayer(upper, { lowers, out: join(t.dir, 'layer.tar'), compression: 'none' });
    for (const compression of ['gzip', 'zstd'] as const) {
      const direct = await diffToLayer(upper, { lowers, out: join(t.dir, `direct.${compression}`), compression });
      const later = await compressLayer(join(t.dir, 'layer.tar'), { out: join(t.dir, `later.${compression}`), compression });
      assert.equal(later.diffId, plain.diffId);
      assert.equal(later.digest, direct.digest, compression);
      assert.equal(later.size, direct.size);
      assert.equal(later.mediaType, direct.mediaType);
    }
  } finally {
    t.cleanup();
  }
});
