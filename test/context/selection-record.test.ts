// A context selection whose every entry still has the stat it had when its checksum was recorded
// gets that checksum back without a file lookup; any change a file can go through (content under
// the same size and mtime, mode, inode, added, removed, link target, hard links) is still seen, and
// files read moments after they changed leave no record.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { changedRacyFile, checksumSources, checksumSourcesUnlessUnchanged, MemoryStatCache, RACY_MS, type ChecksumOptions } from '../../src/context/checksum.js';

let work: string;
let n = 0;
const MTIME = 1_600_000_000;

before(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'strata-selrec-'));
});
after(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});

/** A tree whose files changed longer than RACY_MS ago (their digests may be recorded). */
async function settledTree(): Promise<string> {
  const root = path.join(work, `t${n++}`);
  const files: Record<string, string> = {
    'package.json': '{"name":"x"}\n',
    'src/a.js': 'export const a = 1;\n',
    'src/lib/b.js': 'export const b = 2;\n',
    'src/big.bin': 'y'.repeat(300 * 1024),
  };
  for (const [rel, content] of Object.entries(files)) {
    await fsp.mkdir(path.join(root, path.dirname(rel)), { recursive: true });
    await fsp.writeFile(path.join(root, rel), content);
  }
  // Whole seconds, so that a test can set a file's mtime back exactly.
  for (const rel of Object.keys(files)) await fsp.utimes(path.join(root, rel), MTIME, MTIME);
  await fsp.symlink('a.js', path.join(root, 'src/link.js'));
  await fsp.link(path.join(root, 'src/a.js'), path.join(root, 'src/hard.js'));
  await sleep(RACY_MS + 50);
  return root;
}

function opts(root: string, cache: MemoryStatCache, extra: Partial<ChecksumOptions> = {}): ChecksumOptions {
  return { root, sources: ['src', 'package.json'], statCache: cache, ...extra };
}

/** Checks the answer against a full checksum with no cache at all, and says whether the record answered. */
async function check(root: string, cache: MemoryStatCache, extra: Partial<ChecksumOptions> = {}): Promise<{ reused: boolean; digest: string }> {
  const r = await checksumSourcesUnlessUnchanged(opts(root, cache, extra));
  const full = await checksumSources({ ...opts(root, cache, extra), statCache: undefined });
  assert.equal(r.digest, full.digest, 'the same digest as a full checksum');
  return { reused: r.files === undefined, digest: r.digest };
}

describe('selection records', () => {
  it('answer an unchanged selection with the digest a full checksum gives, and only that selection', async () => {
    const root = await settledTree();
    const cache = new MemoryStatCache();
    const first = await checksumSourcesUnlessUnchanged(opts(root, cache));
    assert.ok(first.files, 'nothing recorded yet: a full checksum with its file list');
    const again = await check(root, cache);
    assert.equal(again.reused, true);
    assert.equal(again.digest, first.digest);
    // checksumSources always lists the files (and gives the same digest).
    const listed = await checksumSources(opts(root, cache));
    assert.equal(listed.digest, first.digest);
    assert.ok(listed.files.some((f) => f.path === 'src/a.js'));
    // Other words, excludes or roots are other selections.
    assert.equal((await check(root, cache, { sources: ['src'] })).reused, false);
    assert.equal((await check(root, cache, { excludes: ['*.bin'] })).reused, false);
    const copy = path.join(work, `copy${n++}`);
    await fsp.cp(root, copy, { recursive: true, verbatimSymlinks: true });
    assert.equal((await check(copy, cache)).reused, false);
  });

  it('see a content change that keeps size and mtime (ctime), and mode, inode, link and list changes', async () => {
    const root = await settledTree();
    const cache = new MemoryStatCache();
    const base = (await check(root, cache)).digest;
    assert.equal((await check(root, cache)).reused, true);

    const a = path.join(root, 'src/lib/b.js');
    const st = await fsp.stat(a);
    assert.equal(st.mtimeMs, MTIME * 1000);
    await fsp.writeFile(a, 'export const b = 3;\n');
    await fsp.utimes(a, MTIME, MTIME);
    const after = await fsp.stat(a);
    assert.equal(after.size, st.size);
    assert.equal(after.mtimeMs, st.mtimeMs, 'only ctime tells');
    const edited = await check(root, cache);
    assert.equal(edited.reused, false);
    assert.notEqual(edited.digest, base);

    const changes: [string, () => Promise<void>, 'same' | 'differs'][] = [
      ['mode', () => fsp.chmod(path.join(root, 'src/a.js'), 0o600), 'differs'],
      ['inode, same content', async () => {
        const p = path.join(root, 'package.json');
        await fsp.writeFile(p + '.new', await fsp.readFile(p));
        await fsp.chmod(p + '.new', (await fsp.stat(p)).mode & 0o7777);
        await fsp.rename(p + '.new', p);
      }, 'same'],
      ['added', () => fsp.writeFile(path.join(root, 'src/c.js'), 'c\n'), 'differs'],
      ['removed', () => fsp.rm(path.join(root, 'src/c.js')), 'differs'],
      ['link target', async () => {
        await fsp.rm(path.join(root, 'src/link.js'));
        await fsp.symlink('lib/b.js', path.join(root, 'src/link.js'));
      }, 'differs'],
      ['hard link undone', async () => {
        const p = path.join(root, 'src/hard.js');
        const content = await fsp.readFile(p);
        await fsp.rm(p);
        await fsp.writeFile(p, content);
        await fsp.chmod(p, (await fsp.stat(path.join(root, 'src/a.js'))).mode & 0o7777);
      }, 'differs'],
    ];
    for (const [what, change, digest] of changes) {
      await sleep(RACY_MS + 20);
      const before = (await check(root, cache)).digest;
      assert.equal((await check(root, cache)).reused, true, `recorded before: ${what}`);
      await change();
      await sleep(RACY_MS + 20);
      const r = await check(root, cache);
      assert.equal(r.reused, false, `${what} is seen`);
      if (digest === 'same') assert.equal(r.digest, before, `${what}: same digest`);
      else assert.notEqual(r.digest, before, `${what}: new digest`);
    }
  });

  it('keep answering when ignored files come and go in a selected directory', async () => {
    const root = await settledTree();
    const cache = new MemoryStatCache();
    const ignore = (rel: string) => rel.endsWith('.swp');
    await check(root, cache, { ignore });
    assert.equal((await check(root, cache, { ignore })).reused, true);
    // An editor's swap file: the directory's mtime and ctime change, the selection does not.
    await fsp.writeFile(path.join(root, 'src/lib/.b.js.swp'), 'swap');
    await fsp.rm(path.join(root, 'src/lib/.b.js.swp'));
    await sleep(RACY_MS + 20);
    assert.equal((await check(root, cache, { ignore })).reused, true);
    // Not ignored, the same file is an added entry.
    await fsp.writeFile(path.join(root, 'src/lib/b.js.bak'), 'bak');
    assert.equal((await check(root, cache, { ignore })).reused, false);
  });

  it('are not kept for files read within RACY_MS of their change', async () => {
    const root = await settledTree();
    const cache = new MemoryStatCache();
    await check(root, cache);
    await fsp.writeFile(path.join(root, 'src/a.js'), 'export const a = 9;\n');
    // Read at once: its digest is good for now, but the next checksum must look at it again.
    const fresh = await checksumSourcesUnlessUnchanged(opts(root, cache));
    assert.ok(fresh.files);
    const next = await checksumSourcesUnlessUnchanged(opts(root, cache));
    assert.ok(next.files, 'no record from a racily clean read');
    assert.equal(next.digest, fresh.digest);
    await sleep(RACY_MS + 20);
    // Settled now: read again (the cache entry was racy too), then recorded.
    const settled = await checksumSourcesUnlessUnchanged(opts(root, cache));
    assert.ok(settled.files);
    assert.ok(settled.bytesRead > 0, 'the racy entry is hashed again');
    assert.equal((await check(root, cache)).reused, true);
  });

  it('name the files read racily, and their digests, for a later content check', async () => {
    const root = await settledTree();
    const cache = new MemoryStatCache();
    await check(root, cache);
    const a = path.join(root, 'src/a.js');
    await fsp.writeFile(a, 'export const a = 7;\n');
    const r = await checksumSourcesUnlessUnchanged(opts(root, cache));
    // a.js and its hard link hard.js are one inode, hashed once
    assert.deepEqual(r.racy.map((f) => f.host), [a]);
    // the walk behind the checksum: what a COPY of these sources copies
    assert.deepEqual(r.selection.map((s) => s.source), ['src', 'package.json']);
    assert.equal(r.selection[0]!.matches[0]!.entries.find((e) => e.rel === 'a.js')?.host, a);
    assert.deepEqual(await changedRacyFile(r.racy), { bytesRead: 20 });
    // same size, another content: a stat may not show it within one tick, a read does
    await fsp.writeFile(a, 'export const a = 8;\n');
    const again = await changedRacyFile(r.racy);
    assert.equal(again.changed?.host, a);
    // settled files are never racy
    const settled = await checksumSourcesUnlessUnchanged(opts(await settledTree(), new MemoryStatCache()));
    assert.deepEqual(settled.racy, []);
  });
});
