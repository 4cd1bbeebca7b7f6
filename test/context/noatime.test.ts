// Reading files to hash them (context checksums), to copy them (COPY) or to archive them (layer
// diffs) leaves their atime alone: with relatime, a read of a file whose atime is not newer than its
// mtime would write its inode back, for every file of a touched context or a fresh layer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checksumSources } from '../../src/context/checksum.js';
import { copyFiles } from '../../src/fileops/copy.js';
import { diffToLayer } from '../../src/snapshot/diff.js';

const isRoot = process.getuid?.() === 0;
const OLD_ATIME = 1_500_000_000;
const MTIME = 1_600_000_000;

function tree(root: string): string[] {
  const files: string[] = [];
  mkdirSync(path.join(root, 'src'), { recursive: true });
  for (const [name, size] of [['small.txt', 100], ['big.bin', 600 * 1024]] as const) {
    const f = path.join(root, 'src', name);
    writeFileSync(f, Buffer.alloc(size, 7));
    utimesSync(f, OLD_ATIME, MTIME); // atime before mtime: a relatime read would update it
    files.push(f);
  }
  return files;
}

const atimes = (files: string[]) => files.map((f) => lstatSync(f).atimeMs);

test('hashing, copying and archiving files do not update their atime', { skip: !isRoot && 'O_NOATIME needs the owner or root' }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-noatime-'));
  try {
    const ctx = path.join(dir, 'ctx');
    const files = tree(ctx);
    assert.deepEqual(atimes(files), [OLD_ATIME * 1000, OLD_ATIME * 1000]);

    const sum = await checksumSources({ root: ctx, sources: ['src'] });
    assert.equal(sum.bytesRead, 100 + 600 * 1024);
    assert.deepEqual(atimes(files), [OLD_ATIME * 1000, OLD_ATIME * 1000], 'checksum');

    const dest = path.join(dir, 'dest');
    await copyFiles({ srcRoot: ctx, srcIsRootfs: false, sources: ['src'], dest: '/src', destRoot: dest, workdir: '/' });
    assert.deepEqual(atimes(files), [OLD_ATIME * 1000, OLD_ATIME * 1000], 'copy source');
    const copied = files.map((f) => path.join(dest, 'src', path.basename(f)));
    assert.deepEqual(atimes(copied), [OLD_ATIME * 1000, OLD_ATIME * 1000]);

    await diffToLayer(dest, { lowers: [], out: path.join(dir, 'layer.tar'), compression: 'none' });
    assert.deepEqual(atimes(copied), [OLD_ATIME * 1000, OLD_ATIME * 1000], 'diff');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
