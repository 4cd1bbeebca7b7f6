// COPY reusing an earlier result (src/fileops/link-reuse.ts): unchanged files are hard-linked from
// the earlier layer, and the result is the one a full copy makes, entry for entry and byte for byte
// in the layer tar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, linkSync, lstatSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync, type BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { copyFiles, type CopyRequest } from '../../src/fileops/copy.js';
import type { CopyReuse } from '../../src/fileops/link-reuse.js';
import { diffToLayer } from '../../src/snapshot/diff.js';
import { mountOverlay, unmountOverlay } from '../../src/snapshot/overlay.js';
import { mkTree, tmpdir } from './helpers.js';

const isRoot = process.getuid?.() === 0;

/** Every entry under dir: kind, mode, owner, size, mtime in ns, content. */
function snapshot(dir: string): Record<string, string> {
  dir = path.join(dir, 'app/src'); // above it: dirs `mkdir -p` made at copy time
  const out: Record<string, string> = {};
  const visit = (rel: string): void => {
    const p = rel === '' ? dir : path.join(dir, rel);
    const st = lstatSync(p, { bigint: true }) as BigIntStats;
    const content = st.isFile() ? readFileSync(p, 'utf8') : '';
    out[rel || '.'] = [st.mode, st.uid, st.gid, st.size, st.mtimeNs, content].join(' ');
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) visit(rel === '' ? n : `${rel}/${n}`);
  };
  visit('');
  return out;
}

async function layerId(dir: string): Promise<string> {
  // the dirs above the copy were made at copy time: give them one time in every tree
  for (const d of [path.join(dir, 'app'), dir]) utimesSync(d, 1_600_000_000, 1_600_000_000);
  const r = await diffToLayer(dir, { lowers: [], out: `${dir}.tar`, compression: 'none' });
  rmSync(`${dir}.tar`, { force: true });
  return r.diffId;
}

function request(ctx: string, destRoot: string, reuse?: CopyReuse): CopyRequest {
  return { srcRoot: ctx, srcIsRootfs: false, sources: ['src'], dest: '/app/src', destRoot, workdir: '/', reuse };
}

/** A full copy, then a copy that may link from it, then a full copy of the same context to compare. */
async function copyThreeWays(work: string, ctx: string, change: () => void, unchanged: (p: string) => boolean) {
  const old = path.join(work, 'old');
  const linked = path.join(work, 'linked');
  const full = path.join(work, 'full');
  await copyFiles(request(ctx, old));
  change();
  const r = await copyFiles(request(ctx, linked, { layerDir: old, unchanged }));
  const done = r.finish ? await r.finish(linked) : undefined;
  await copyFiles(request(ctx, full));
  return { old, linked, full, stats: { linked: done?.linked ?? 0, copied: done?.copied ?? 0 }, done };
}

const FILES = {
  'src/top.txt': 'top\n',
  'src/a/one.txt': 'one\n',
  'src/a/two.txt': 'two\n',
  'src/a/b/three.txt': 'three\n',
  'src/a/b/four.txt': { content: '#!/bin/sh\n', mode: 0o755 },
  'src/c/five.txt': 'five\n',
  'src/link': { link: 'top.txt' },
};

/** Sub-second mtimes (with nanoseconds the copy cannot keep), different per file and dir. */
function setTimes(ctx: string): void {
  let i = 0;
  for (const rel of ['src/top.txt', 'src/a/one.txt', 'src/a/two.txt', 'src/a/b/three.txt', 'src/a/b/four.txt', 'src/c/five.txt', 'src/a/b', 'src/a', 'src/c', 'src']) {
    const t = 1_600_000_000.123456789 + 1000 * i++;
    utimesSync(path.join(ctx, rel), t, t);
  }
}

test('unchanged files are hard-linked from the earlier layer; the result equals a full copy, to the layer digest', async () => {
  const work = await tmpdir('strata-linkreuse-');
  try {
    const ctx = path.join(work, 'ctx');
    await mkTree(ctx, FILES);
    setTimes(ctx);
    const changedPath = path.join(ctx, 'src/a/b/three.txt');
    const { old, linked, full, stats, done } = await copyThreeWays(
      work,
      ctx,
      () => {
        writeFileSync(changedPath, 'three, changed\n');
        utimesSync(changedPath, 1_600_000_002.5, 1_600_000_002.5);
      },
      (p) => p !== 'src/a/b/three.txt',
    );
    assert.deepEqual(stats, { linked: 5, copied: 0 });
    const linkedFiles = ['top.txt', 'a/one.txt', 'a/two.txt', 'a/b/four.txt', 'c/five.txt'];
    for (const f of linkedFiles) {
      const a = lstatSync(path.join(old, 'app/src', f));
      const b = lstatSync(path.join(linked, 'app/src', f));
      assert.equal(b.ino, a.ino, `${f} is linked`);
      assert.equal(b.nlink, 2);
      // what the layer diff may copy from the earlier tar, and what the copy never read
      assert.equal(done?.inodes.get(b.ino), `app/src/${f}`);
      assert.ok(done?.sources.has(path.join(ctx, 'src', f)), `${f} is reported as not read`);
    }
    assert.equal(done?.inodes.size, 5);
    assert.equal(done?.sources.size, 5);
    assert.notEqual(lstatSync(path.join(linked, 'app/src/a/b/three.txt')).ino, lstatSync(path.join(old, 'app/src/a/b/three.txt')).ino);
    assert.equal(readFileSync(path.join(linked, 'app/src/a/b/three.txt'), 'utf8'), 'three, changed\n');
    // the same entries, modes, owners, nanosecond mtimes (dirs included: links moved them) and bytes
    assert.deepEqual(snapshot(linked), snapshot(full));
    assert.equal(await layerId(linked), await layerId(full));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('files whose mtime, mode or content differ from the earlier layer are copied, not linked', async () => {
  const work = await tmpdir('strata-linkreuse-');
  try {
    const ctx = path.join(work, 'ctx');
    await mkTree(ctx, FILES);
    setTimes(ctx);
    const { linked, full, stats } = await copyThreeWays(
      work,
      ctx,
      () => {
        // touched only: same content (the checksum says unchanged), another mtime
        utimesSync(path.join(ctx, 'src/top.txt'), 1_700_000_000.25, 1_700_000_000.25);
        // same content and time, another mode (a checksum would differ; here it claims unchanged)
        chmodSync(path.join(ctx, 'src/a/one.txt'), 0o600);
      },
      () => true,
    );
    assert.deepEqual(stats, { linked: 4, copied: 2 });
    assert.equal(lstatSync(path.join(linked, 'app/src/top.txt')).nlink, 1);
    assert.equal(lstatSync(path.join(linked, 'app/src/a/one.txt')).nlink, 1);
    assert.deepEqual(snapshot(linked), snapshot(full));
    assert.equal(await layerId(linked), await layerId(full));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('two files are never linked to one inode of the earlier layer (that would make a hard link pair in the tar)', async () => {
  const work = await tmpdir('strata-linkreuse-');
  try {
    const ctx = path.join(work, 'ctx');
    await mkTree(ctx, { 'src/x.txt': 'same\n', 'src/y.txt': 'same\n' });
    const t = 1_600_000_000.5;
    for (const f of ['src/x.txt', 'src/y.txt', 'src']) utimesSync(path.join(ctx, f), t, t);
    const { old, linked, full, stats } = await copyThreeWays(
      work,
      ctx,
      () => {
        // the earlier layer holds x and y as one inode (as if its source had them hard-linked)
        rmSync(path.join(work, 'old/app/src/y.txt'));
        linkSync(path.join(work, 'old/app/src/x.txt'), path.join(work, 'old/app/src/y.txt'));
        utimesSync(path.join(work, 'old/app/src'), t, t);
      },
      () => true,
    );
    assert.ok(old);
    assert.deepEqual(stats, { linked: 1, copied: 1 });
    assert.notEqual(lstatSync(path.join(linked, 'app/src/x.txt')).ino, lstatSync(path.join(linked, 'app/src/y.txt')).ino);
    assert.equal(await layerId(linked), await layerId(full));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('a later step changing a linked file through overlayfs leaves the earlier layer as it was', { skip: !isRoot && 'needs root' }, async () => {
  const work = await tmpdir('strata-linkreuse-');
  try {
    const ctx = path.join(work, 'ctx');
    await mkTree(ctx, FILES);
    setTimes(ctx);
    const { old, linked } = await copyThreeWays(work, ctx, () => undefined, () => true);
    const before = snapshot(old);
    const target = path.join(work, 'merged');
    await mountOverlay({ lowers: [linked], upper: path.join(work, 'upper'), work: path.join(work, 'ovlwork'), target });
    try {
      writeFileSync(path.join(target, 'app/src/top.txt'), 'rewritten\n');
      writeFileSync(path.join(target, 'app/src/a/one.txt'), 'appended\n', { flag: 'a' });
      rmSync(path.join(target, 'app/src/c/five.txt'));
    } finally {
      await unmountOverlay(target);
    }
    assert.equal(readFileSync(path.join(work, 'upper/app/src/top.txt'), 'utf8'), 'rewritten\n');
    assert.deepEqual(snapshot(old), before);
    assert.equal(readFileSync(path.join(linked, 'app/src/top.txt'), 'utf8'), 'top\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
