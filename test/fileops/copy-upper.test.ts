// COPY writing straight into the overlay's upper dir (CopyRequest.destUpper). The same COPY over the
// same lowers runs twice, once only through the mount and once with destUpper; both must leave the
// same upper (kind, mode, owner, size, mtime to the nanosecond, content, link target, device numbers,
// xattrs including overlayfs's own, hard-link groups) and the same layer digest. `intoUpper` says
// which entries took the new path, so a rule that stopped using it (or used it too widely) shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, linkSync, lchownSync, lstatSync, lutimesSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, type BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { getAttributeSync, listAttributesSync, setAttributeSync } from 'fs-xattr';
import { copyFiles, type CopyRequest, type CopyResult } from '../../src/fileops/copy.js';
import { diffToLayer } from '../../src/snapshot/diff.js';
import { mountOverlay, unmountOverlay } from '../../src/snapshot/overlay.js';
import { mkTree, tmpdir, type Spec } from './helpers.js';

const isRoot = process.getuid?.() === 0;
const skip = !isRoot && 'needs root (overlayfs)';
/** Source and lower times: long ago, so anything newer was set while copying. */
const T0 = 1_600_000_000;

type Req = Omit<CopyRequest, 'destRoot' | 'destUpper'>;

/** A tree with extras mkTree does not make; every entry then gets its own sub-second time. */
async function makeTree(root: string, spec: Spec, extra: (root: string) => void = () => undefined): Promise<void> {
  mkdirSync(root, { recursive: true });
  await mkTree(root, spec);
  extra(root);
  let i = 0;
  const visit = (rel: string): void => {
    const p = rel === '' ? root : path.join(root, rel);
    const st = lstatSync(p);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) visit(rel === '' ? n : `${rel}/${n}`);
    const t = T0 + 17 * i++ + 0.123456789;
    lutimesSync(p, t, t);
  };
  visit('');
}

function whiteout(p: string): void {
  execFileSync('mknod', [p, 'c', '0', '0']);
}

function opaque(p: string): void {
  setAttributeSync(p, 'trusted.overlay.opaque', Buffer.from('y'));
}

/** Every entry under dir, by relative path. Hard links show as the first path of their inode. */
function snapshot(dir: string): Record<string, string> {
  const stats = new Map<string, BigIntStats>();
  const visit = (rel: string): void => {
    const p = rel === '' ? dir : path.join(dir, rel);
    const st = lstatSync(p, { bigint: true });
    stats.set(rel, st);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) visit(rel === '' ? n : `${rel}/${n}`);
  };
  visit('');
  const byIno = new Map<bigint, string[]>();
  for (const [rel, st] of stats) if (st.isFile()) byIno.set(st.ino, [...(byIno.get(st.ino) ?? []), rel]);
  const out: Record<string, string> = {};
  for (const [rel, st] of stats) {
    const p = rel === '' ? dir : path.join(dir, rel);
    let what = '';
    if (st.isFile()) what = createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16);
    else if (st.isSymbolicLink()) what = `-> ${readlinkSync(p)}`;
    else if (st.isCharacterDevice() || st.isBlockDevice()) what = `dev ${st.rdev}`;
    const group = st.isFile() ? byIno.get(st.ino)! : [];
    const link = group.length > 1 ? `link ${group[0]}` : '';
    const xattrs = st.isSymbolicLink()
      ? ''
      : listAttributesSync(p)
          // The upper root carries the id of the mount that used it.
          .filter((n) => !(rel === '' && n === 'trusted.overlay.uuid'))
          .sort()
          .map((n) => `${n}=${getAttributeSync(p, n).toString('hex')}`)
          .join(',');
    out[rel || '.'] = [st.mode.toString(8), st.uid, st.gid, st.isFile() ? st.size : '', st.mtimeNs, what, link, xattrs].join(' ');
  }
  return out;
}

/** Gives what the copy stamped with the time of copying (parents it made, heredocs) one time. */
function settleNow(dir: string, since: number): void {
  const visit = (p: string): void => {
    const st = lstatSync(p);
    if (st.isDirectory()) for (const n of readdirSync(p)) visit(path.join(p, n));
    if (st.mtimeMs >= since - 5000) lutimesSync(p, T0 - 1, T0 - 1);
  };
  visit(dir);
}

interface Run {
  upper: string;
  result?: CopyResult;
  error?: unknown;
}

let runs = 0;

/** The copy through a fresh overlay of `lowers`; the upper is left as the step would commit it. */
async function runCopy(work: string, lowers: string[], req: Req, withUpper: boolean, extra: Partial<CopyRequest> = {}): Promise<Run> {
  const base = path.join(work, `run${runs++}`);
  const upper = path.join(base, 'upper');
  const merged = path.join(base, 'merged');
  for (const d of [upper, path.join(base, 'ovl'), merged]) mkdirSync(d, { recursive: true });
  await mountOverlay({ lowers, upper, work: path.join(base, 'ovl'), target: merged });
  const run: Run = { upper };
  try {
    run.result = await copyFiles({ ...req, ...extra, destRoot: merged, destUpper: withUpper ? upper : undefined });
  } catch (e) {
    run.error = e;
  } finally {
    await unmountOverlay(merged);
  }
  if (run.result?.finish) await run.result.finish(upper);
  return run;
}

async function layer(upper: string, lowers: string[]): Promise<string> {
  const out = `${upper}.tar`;
  const r = await diffToLayer(upper, { lowers, out, compression: 'none' });
  rmSync(out, { force: true });
  return r.diffId;
}

/**
 * The COPY both ways; asserts the same outcome (the same error code, or the same upper and layer)
 * and returns the run with destUpper.
 */
async function bothWays(work: string, lowers: string[], req: Req, extra: Partial<CopyRequest> = {}): Promise<Run> {
  const started = Date.now();
  const plain = await runCopy(work, lowers, req, false, extra);
  const direct = await runCopy(work, lowers, req, true, extra);
  if (plain.error !== undefined || direct.error !== undefined) {
    assert.ok(plain.error !== undefined && direct.error !== undefined, `only one way failed: ${String(plain.error ?? direct.error)}`);
    assert.equal((direct.error as { code?: string }).code, (plain.error as { code?: string }).code);
    return direct;
  }
  assert.equal(plain.result!.intoUpper, 0, 'nothing goes into the upper without destUpper');
  assert.equal(direct.result!.copied, plain.result!.copied);
  for (const r of [plain, direct]) settleNow(r.upper, started);
  assert.deepEqual(snapshot(direct.upper), snapshot(plain.upper));
  assert.equal(await layer(direct.upper, lowers), await layer(plain.upper, lowers));
  return direct;
}

function req(srcRoot: string, sources: string[], dest: string, more: Partial<Req> = {}): Req {
  return { srcRoot, srcIsRootfs: false, sources, dest, workdir: '/', ...more };
}

/** A lower with /app (as WORKDIR makes it) and a little of a rootfs. */
async function baseLower(work: string): Promise<string> {
  const l = path.join(work, 'base');
  await makeTree(l, { 'app/': { dir: true }, 'etc/passwd': 'root:x:0:0::/root:/bin/sh\n', 'usr/bin/': { dir: true } });
  return l;
}

test('a new destination dir: everything below it is written into the upper, with the same result', { skip }, async () => {
  const work = await tmpdir('strata-cu-');
  try {
    const ctx = path.join(work, 'ctx');
    await makeTree(
      ctx,
      {
        'src/top.txt': 'top\n',
        'src/run.sh': { content: '#!/bin/sh\n', mode: 0o755 },
        'src/secret': { content: 's', mode: 0o600 },
        'src/suid': { content: 'x', mode: 0o4755 },
        'src/a/one.txt': 'one\n',
        'src/a/b/c/deep.txt': 'deep\n',
        'src/empty/': { dir: true, mode: 0o700 },
        'src/sticky/': { dir: true, mode: 0o1777 },
        'src/rel-link': { link: 'a/one.txt' },
        'src/abs-link': { link: '/etc/passwd' },
        'src/dangling': { link: 'nowhere' },
      },
      (root) => {
        linkSync(path.join(root, 'src/top.txt'), path.join(root, 'src/top-again.txt'));
        linkSync(path.join(root, 'src/a/one.txt'), path.join(root, 'src/a/b/one-linked.txt'));
        execFileSync('mknod', [path.join(root, 'src/a/pipe'), 'p']);
      },
    );
    const lowers = [await baseLower(work)];
    const r = await bothWays(work, lowers, req(ctx, ['src'], '/app/src'));
    // All 17 entries below /app/src (which itself is made through the mount).
    assert.equal(r.result!.intoUpper, 17);
    const up = (p: string) => lstatSync(path.join(r.upper, 'app/src', p));
    assert.equal(up('top.txt').ino, up('top-again.txt').ino);
    assert.equal(up('a/one.txt').ino, up('a/b/one-linked.txt').ino);
    assert.ok(up('a/pipe').isFIFO());
    assert.equal(up('suid').mode & 0o7777, 0o4755);

    // The same with a relative dest below WORKDIR, --chown and --chmod.
    const owned = await bothWays(work, lowers, req(ctx, ['src'], 'src', { workdir: '/app', chown: { uid: 1234, gid: 5678 }, chmod: 'go-rwx,u+X' }));
    assert.equal(owned.result!.intoUpper, 17);
    const st = lstatSync(path.join(owned.upper, 'app/src/a/b/c/deep.txt'));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [1234, 5678, 0o600]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('an existing destination: dirs the lowers have go through the mount, dirs the copy makes go into the upper', { skip }, async () => {
  const work = await tmpdir('strata-cu-');
  try {
    const bottom = path.join(work, 'bottom');
    await makeTree(bottom, {
      'app/src/a/old.txt': 'old\n',
      'app/src/a/keep.txt': 'keep\n',
      'app/src/gone/hidden.txt': 'hidden\n',
      'app/src/opq/below.txt': 'below\n',
      'app/src/file-here': 'a file the copy replaces\n',
    });
    const top = path.join(work, 'top');
    await makeTree(top, { 'app/src/opq/above.txt': 'above\n' }, (root) => {
      // /app/src/gone is deleted by the top layer; /app/src/opq hides what is below it.
      whiteout(path.join(root, 'app/src/gone'));
      opaque(path.join(root, 'app/src/opq'));
    });
    const ctx = path.join(work, 'ctx');
    await makeTree(ctx, {
      'src/a/old.txt': 'new content\n',
      'src/a/new.txt': 'new\n',
      'src/a/sub/x.txt': 'x\n',
      'src/gone/again/y.txt': 'y\n',
      'src/opq/above.txt': 'replaced\n',
      'src/opq/more/z.txt': 'z\n',
      'src/fresh/deep/er/w.txt': 'w\n',
      'src/file-here': 'replaced file\n',
    });
    const lowers = [top, bottom];
    const r = await bothWays(work, lowers, req(ctx, ['src'], '/app/src'));
    // Below new dirs only: a/sub/x.txt; gone/again, gone/again/y.txt; opq/more/z.txt;
    // fresh/deep, fresh/deep/er, fresh/deep/er/w.txt.
    assert.equal(r.result!.intoUpper, 7);
    // The dir made again over the top layer's whiteout shows nothing of the bottom layer's.
    assert.deepEqual(readdirSync(path.join(r.upper, 'app/src/gone')), ['again']);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('hard links stay on one side: a new dir whose file is linked again outside it stays on the mount', { skip }, async () => {
  const work = await tmpdir('strata-cu-');
  try {
    const lower = path.join(work, 'lower');
    await makeTree(lower, { 'dst/b/': { dir: true } });
    const ctx = path.join(work, 'ctx');
    await makeTree(
      ctx,
      { 'src/a/l1': 'one\n', 'src/b/l2': 'two\n', 'src/c/x/l3': 'three\n', 'src/c/plain': 'plain\n' },
      (root) => {
        const s = (p: string) => path.join(root, 'src', p);
        linkSync(s('a/l1'), s('b/l1')); // first in the new dir a, again in b (in the lower)
        linkSync(s('b/l2'), s('c/l2')); // first in b, again in the new dir c
        mkdirSync(s('c/y'));
        linkSync(s('c/x/l3'), s('c/y/l3')); // both in c
      },
    );
    const r = await bothWays(work, [lower], req(ctx, ['src'], '/dst'));
    // a stays on the mount (its l1 is linked from b later); everything in c goes into the upper.
    assert.equal(r.result!.intoUpper, 6);
    const up = (p: string) => lstatSync(path.join(r.upper, 'dst', p)).ino;
    assert.equal(up('a/l1'), up('b/l1'));
    assert.equal(up('b/l2'), up('c/l2'));
    assert.equal(up('c/x/l3'), up('c/y/l3'));
    assert.notEqual(up('a/l1'), up('b/l2'));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('several sources, an archive, a heredoc, a single file: all through the mount as before', { skip }, async () => {
  const work = await tmpdir('strata-cu-');
  try {
    const ctx = path.join(work, 'ctx');
    await makeTree(ctx, { 'one/a/x.txt': 'x\n', 'two/b/y.txt': 'y\n', 'two/a/z.txt': 'z\n', 'single.txt': 's\n', 'payload/pkg/bin/tool': { content: 't', mode: 0o755 } });
    execFileSync('tar', ['-cf', path.join(ctx, 'a.tar'), '--mtime=@1600000000', '-C', path.join(ctx, 'payload'), '.']);
    const lowers = [await baseLower(work)];
    const many = await bothWays(work, lowers, req(ctx, ['one', 'two'], '/app/dst/'));
    assert.equal(many.result!.intoUpper, 0);
    const add = await bothWays(work, lowers, req(ctx, ['a.tar'], '/app/unpacked/', { isAdd: true }));
    assert.equal(add.result!.intoUpper, 0);
    const here = await bothWays(work, lowers, req(ctx, ['<<EOF'], '/app/new/run.sh', { heredocs: [{ name: 'EOF', content: 'echo hi\n' }], chmod: '755' }));
    assert.equal(here.result!.intoUpper, 0);
    const single = await bothWays(work, lowers, req(ctx, ['single.txt'], '/app/new/dir/'));
    assert.equal(single.result!.intoUpper, 0);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('destinations through a symlink of the lowers, onto a file, with --parents and --exclude', { skip }, async () => {
  const work = await tmpdir('strata-cu-');
  try {
    const lower = path.join(work, 'lower');
    await makeTree(lower, {
      'srv/': { dir: true },
      'app': { link: '/srv/app' },
      'data/existing.txt': 'e\n',
      'link-to-data': { link: 'data' },
      'a-file': 'I am a file\n',
    });
    const ctx = path.join(work, 'ctx');
    await makeTree(ctx, {
      'src/a/one.txt': '1\n',
      'src/a/b/two.txt': '2\n',
      'src/a/b/skip.md': 'no\n',
      'src/c/three.txt': '3\n',
    });
    const lowers = [lower];
    const viaLink = await bothWays(work, lowers, req(ctx, ['src'], '/app/src'));
    assert.ok(lstatSync(path.join(viaLink.upper, 'srv/app/src/a/b/two.txt')).isFile());
    assert.equal(viaLink.result!.intoUpper, 7);
    // Into an existing dir named through a symlink: its new subdirs fill the upper.
    const intoExisting = await bothWays(work, lowers, req(ctx, ['src'], '/link-to-data'));
    assert.equal(intoExisting.result!.intoUpper, 5);
    assert.ok(lstatSync(path.join(intoExisting.upper, 'data/a/b/two.txt')).isFile());
    // A file where the destination dir would go fails the same way both ways.
    const onFile = await bothWays(work, lowers, req(ctx, ['src'], '/a-file'));
    assert.equal((onFile.error as { code?: string }).code, 'COPY_DEST_CONFLICT');
    const filtered = await bothWays(work, lowers, req(ctx, ['src/./a'], '/p/', { parents: true, excludes: ['**/*.md'] }));
    assert.ok(lstatSync(path.join(filtered.upper, 'p/a/b/two.txt')).isFile());
    assert.ok(!lstatSync(path.join(filtered.upper, 'p/a/b/skip.md'), { throwIfNoEntry: false }));
    assert.ok(filtered.result!.intoUpper > 0);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('COPY --from a rootfs keeps owners, setgid dirs and xattrs the same way', { skip }, async () => {
  const work = await tmpdir('strata-cu-');
  try {
    const rootfs = path.join(work, 'rootfs');
    await makeTree(
      rootfs,
      {
        'opt/tool/bin/tool': { content: 'tool', mode: 0o755 },
        'opt/tool/share/': { dir: true, mode: 0o2775 },
        'opt/tool/share/data': 'data\n',
        'opt/tool/share/sub/more': 'more\n',
        'opt/tool/lib': { link: 'bin' },
      },
      (root) => {
        const p = (s: string) => path.join(root, 'opt/tool', s);
        chownSync(p('share'), 2000, 2001);
        chownSync(p('bin/tool'), 1000, 1001);
        lchownSync(p('lib'), 1000, 1000);
        setAttributeSync(p('bin/tool'), 'user.origin', Buffer.from('tool'));
        setAttributeSync(p('share'), 'user.dir', Buffer.from('d'));
        setAttributeSync(p('share/data'), 'trusted.keep', Buffer.from('t'));
        linkSync(p('bin/tool'), p('bin/tool-again'));
      },
    );
    const lowers = [await baseLower(work)];
    const r = await bothWays(work, lowers, { srcRoot: rootfs, srcIsRootfs: true, sources: ['/opt/tool'], dest: '/opt/tool', workdir: '/' });
    assert.equal(r.result!.intoUpper, 8);
    const tool = path.join(r.upper, 'opt/tool/bin/tool');
    assert.equal(getAttributeSync(tool, 'user.origin').toString(), 'tool');
    assert.equal(lstatSync(tool).uid, 1000);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('linking unchanged files from an earlier layer works the same with destUpper', { skip }, async () => {
  const work = await tmpdir('strata-cu-');
  try {
    const ctx = path.join(work, 'ctx');
    await makeTree(ctx, { 'src/a.txt': 'a\n', 'src/d/b.txt': 'b\n', 'src/d/e/c.txt': 'c\n' });
    const lowers = [await baseLower(work)];
    const request = req(ctx, ['src'], '/app/src');
    const earlier = await runCopy(work, lowers, request, false);
    const reuse = { layerDir: earlier.upper, unchanged: () => true };
    const r = await bothWays(work, lowers, request, { reuse });
    assert.equal(r.result!.intoUpper, 2, 'the dirs d and d/e; the files are linked after the unmount');
    // The files are links to the earlier layer's.
    assert.equal(lstatSync(path.join(r.upper, 'app/src/d/e/c.txt')).ino, lstatSync(path.join(earlier.upper, 'app/src/d/e/c.txt')).ino);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
