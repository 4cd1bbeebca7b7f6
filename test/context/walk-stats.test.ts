// The stat a walk keeps for each entry (which the copy reads too) is a full fs.Stats to its readers:
// every number lstat gave, the type tests, and dates on demand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, Stats, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { selectSource } from '../../src/context/walk.js';

test('walk entries carry the stat lstat gives: numbers, type tests and dates', async () => {
  const root = mkdtempSync(join(os.tmpdir(), 'strata-walkstats-'));
  try {
    mkdirSync(join(root, 'src/sub'), { recursive: true });
    writeFileSync(join(root, 'src/a.txt'), 'abc');
    utimesSync(join(root, 'src/a.txt'), 1_600_000_000, 1_600_000_123);
    symlinkSync('a.txt', join(root, 'src/link'));
    const sel = await selectSource('src', { root });
    const entries = sel.matches[0]!.entries;
    assert.deepEqual(entries.map((e) => e.rel), ['a.txt', 'link', 'sub']);
    const numeric = ['dev', 'mode', 'nlink', 'uid', 'gid', 'rdev', 'blksize', 'ino', 'size', 'blocks', 'atimeMs', 'mtimeMs', 'ctimeMs', 'birthtimeMs'] as const;
    for (const e of entries) {
      const fresh = lstatSync(e.host);
      assert.ok(e.st instanceof Stats);
      // The walk reads links and directories after their lstat, which moves their atime.
      const same = (k: string) => !(e.kind !== 'file' && k.startsWith('atime'));
      for (const k of numeric) if (same(k)) assert.equal(e.st[k], fresh[k], `${e.rel} ${k}`);
      assert.equal(e.st.isFile(), fresh.isFile());
      assert.equal(e.st.isDirectory(), fresh.isDirectory());
      assert.equal(e.st.isSymbolicLink(), fresh.isSymbolicLink());
      for (const d of ['atime', 'mtime', 'ctime', 'birthtime'] as const) if (same(d)) assert.equal(e.st[d].getTime(), fresh[d].getTime(), `${e.rel} ${d}`);
    }
    assert.equal(entries[0]!.st.mtime.getTime(), 1_600_000_123_000);
    assert.equal(entries[0]!.st.size, 3);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
