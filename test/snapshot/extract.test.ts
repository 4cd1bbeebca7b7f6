import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { extractLayer } from '../../src/snapshot/extract.js';
import { isStrataError } from '../../src/errors.js';
import { buildTar, isRoot, streamOf, tempDir, xattrsOf } from './helpers.js';

const skip = !isRoot && 'needs root';
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

test('extractLayer lays down every entry type with owners, modes, mtimes and xattrs', { skip }, async () => {
  const t = tempDir('extract');
  try {
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex').toString('latin1');
    const tar = await buildTar([
      { name: './', type: 'directory', mode: 0o700 },
      { name: './bin/', type: 'directory', mtime: 1_000_000_000 },
      { name: './bin/busybox', data: 'BUSYBOX', mode: 0o4755, uid: 1234, gid: 5678, mtime: 1_234_567_890 },
      { name: './bin/sh', type: 'symlink', linkname: '/bin/busybox', mtime: 1_111_111_111 },
      { name: './bin/ls', type: 'symlink', linkname: 'busybox' },
      { name: './bin/ash', type: 'link', linkname: './bin/busybox' },
      { name: './dev/', type: 'directory' },
      { name: './dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: './dev/loop9', type: 'block-device', devmajor: 7, devminor: 9, mode: 0o660 },
      { name: './run/', type: 'directory' },
      { name: './run/fifo', type: 'fifo', mode: 0o600 },
      { name: 'usr/lib/deep/file', data: 'no parent entries' },
      { name: 'ping', data: 'ping', pax: { 'SCHILY.xattr.user.color': 'blue', 'SCHILY.xattr.security.capability': cap } },
      { name: `long/${'d'.repeat(120)}/${'f'.repeat(120)}`, data: 'long name' },
      { name: 'big', data: Buffer.alloc(200_000, 7) },
    ]);
    const dest = join(t.dir, 'layer');
    const r = await extractLayer(streamOf(tar), dest, { label: 'test layer' });
    assert.equal(r.diffId, sha(tar));
    assert.equal(r.size, tar.length);

    const bb = lstatSync(join(dest, 'bin/busybox'));
    assert.equal(bb.mode & 0o7777, 0o4755);
    assert.equal(bb.uid, 1234);
    assert.equal(bb.gid, 5678);
    assert.equal(bb.mtimeMs, 1_234_567_890_000);
    assert.equal(bb.nlink, 2);
    assert.equal(lstatSync(join(dest, 'bin/ash')).ino, bb.ino);
    assert.equal(readlinkSync(join(dest, 'bin/sh')), '/bin/busybox');
    assert.equal(lstatSync(join(dest, 'bin/sh')).mtimeMs, 1_111_111_111_000);
    assert.equal(readlinkSync(join(dest, 'bin/ls')), 'busybox');
    assert.equal(lstatSync(join(dest, 'bin')).mtimeMs, 1_000_000_000_000);
    const nul = lstatSync(join(dest, 'dev/null'));
    assert.ok(nul.isCharacterDevice());
    assert.equal(nul.rdev, (1 << 8) | 3);
    assert.ok(lstatSync(join(dest, 'dev/loop9')).isBlockDevice());
    assert.ok(lstatSync(join(dest, 'run/fifo')).isFIFO());
    assert.equal(readFileSync(join(dest, 'usr/lib/deep/file'), 'utf8'), 'no parent entries');
    assert.ok(lstatSync(join(dest, 'usr/lib')).isDirectory());
    assert.deepEqual(xattrsOf(join(dest, 'ping')), {
      'security.capability': '0100000200200000000000000000000000000000',
      'user.color': Buffer.from('blue').toString('hex'),
    });
    assert.equal(readFileSync(join(dest, `long/${'d'.repeat(120)}/${'f'.repeat(120)}`), 'utf8'), 'long name');
    assert.deepEqual(readFileSync(join(dest, 'big')), Buffer.alloc(200_000, 7));
  } finally {
    t.cleanup();
  }
});

test('extractLayer converts OCI whiteouts to overlay whiteouts and opaque dirs, and strips forged overlay xattrs', { skip }, async () => {
  const t = tempDir('whiteout');
  try {
    const tar = await buildTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/.wh.group', data: '' },
      { name: 'var/', type: 'directory' },
      { name: 'var/cache/', type: 'directory' },
      { name: 'var/cache/.wh..wh..opq', data: '' },
      { name: 'var/cache/fresh', data: 'new' },
      { name: 'implicit/.wh..wh..opq', data: '' },
      { name: '.wh.gone', data: '' },
      { name: '.wh..wh.plnk', type: 'directory' },
      // a whiteout and a directory of the same name in one layer: the dir replaces the old one
      { name: '.wh.opt', data: '' },
      { name: 'opt/', type: 'directory' },
      { name: 'opt/new', data: 'x' },
      { name: 'srv/', type: 'directory' },
      { name: 'srv/.wh.keep', data: '' },
      { name: 'srv/keep', data: 'the entry of this layer wins' },
      { name: 'forged/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'SCHILY.xattr.user.overlay.redirect': '/x', 'SCHILY.xattr.user.ok': '1' } },
    ]);
    const dest = join(t.dir, 'layer');
    await extractLayer(streamOf(tar), dest, { label: 'sha256:' + 'ab'.repeat(32) });
    for (const wh of ['etc/group', 'gone']) {
      const st = lstatSync(join(dest, wh));
      assert.ok(st.isCharacterDevice(), wh);
      assert.equal(st.rdev, 0);
    }
    assert.equal(existsSync(join(dest, 'etc/.wh.group')), false);
    assert.equal(existsSync(join(dest, '.wh..wh.plnk')), false);
    assert.equal(existsSync(join(dest, 'var/cache/.wh..wh..opq')), false);
    const opaque = Buffer.from('y').toString('hex');
    assert.deepEqual(xattrsOf(join(dest, 'var/cache')), { 'trusted.overlay.opaque': opaque });
    assert.deepEqual(xattrsOf(join(dest, 'implicit')), { 'trusted.overlay.opaque': opaque });
    assert.deepEqual(xattrsOf(join(dest, 'opt')), { 'trusted.overlay.opaque': opaque });
    assert.equal(readFileSync(join(dest, 'opt/new'), 'utf8'), 'x');
    assert.equal(readFileSync(join(dest, 'srv/keep'), 'utf8'), 'the entry of this layer wins');
    assert.deepEqual(xattrsOf(join(dest, 'var')), {});
    assert.deepEqual(xattrsOf(join(dest, 'forged')), { 'user.ok': Buffer.from('1').toString('hex') });
  } finally {
    t.cleanup();
  }
});

test('extractLayer detects gzip, zstd and plain tar and hashes the uncompressed stream', { skip }, async () => {
  const t = tempDir('compress');
  try {
    const tar = await buildTar([
      { name: 'a/', type: 'directory' },
      { name: 'a/b', data: 'hello world\n'.repeat(1000) },
    ]);
    const gz = zlib.gzipSync(tar);
    const zst = spawnSync('zstd', ['-c', '-q'], { input: tar }).stdout;
    assert.equal(zst.readUInt32LE(0), 0xfd2fb528);
    for (const [kind, blob] of [['tar', tar], ['gzip', gz], ['zstd', zst]] as const) {
      const dest = join(t.dir, kind);
      const r = await extractLayer(streamOf(blob), dest, { label: kind });
      assert.equal(r.diffId, sha(tar), kind);
      assert.equal(r.size, tar.length, kind);
      assert.equal(readFileSync(join(dest, 'a/b'), 'utf8'), 'hello world\n'.repeat(1000), kind);
    }
  } finally {
    t.cleanup();
  }
});

test('extractLayer removes the partial directory and explains corrupt input', { skip }, async () => {
  const t = tempDir('corrupt');
  try {
    const tar = await buildTar([
      { name: 'a', data: 'x'.repeat(5000) },
      { name: 'b', data: 'y'.repeat(5000) },
    ]);
    const truncated = tar.subarray(0, 512 + 5120 + 512 + 1000);
    const dest = join(t.dir, 'layer');
    await assert.rejects(extractLayer(streamOf(truncated), dest, { label: 'truncated' }), (e: unknown) => {
      assert.ok(isStrataError(e));
      assert.equal(e.code, 'BAD_LAYER');
      assert.match(e.message, /truncated/);
      return true;
    });
    assert.equal(existsSync(dest), false);

    const badGzip = zlib.gzipSync(tar);
    badGzip[100] ^= 0xff;
    await assert.rejects(extractLayer(streamOf(badGzip), dest, { label: 'bad gzip' }), (e: unknown) => isStrataError(e) && e.code === 'BAD_LAYER');
    assert.equal(existsSync(dest), false);

    await assert.rejects(extractLayer(streamOf(Buffer.from('this is not a tar at all'.repeat(40))), dest, { label: 'junk' }), (e: unknown) => isStrataError(e) && e.code === 'BAD_LAYER');
    assert.equal(existsSync(dest), false);

    mkdirSync(dest);
    writeFileSync(join(dest, 'occupied'), '');
    await assert.rejects(extractLayer(streamOf(tar), dest, { label: 'busy' }), (e: unknown) => isStrataError(e) && e.code === 'LAYER_DEST_NOT_EMPTY');
    assert.ok(existsSync(join(dest, 'occupied')));
  } finally {
    t.cleanup();
  }
});

test('extractLayer output is readable as an overlay lower: whiteouts hide, opaque dirs replace', { skip }, async () => {
  const { mountOverlay, unmountOverlay } = await import('../../src/snapshot/overlay.js');
  const t = tempDir('stack');
  try {
    const base = await buildTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/group', data: 'g' },
      { name: 'etc/passwd', data: 'p' },
      { name: 'var/', type: 'directory' },
      { name: 'var/cache/', type: 'directory' },
      { name: 'var/cache/old', data: 'o' },
      { name: 'forged/', type: 'directory' },
      { name: 'forged/below', data: 'b' },
    ]);
    const top = await buildTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/.wh.group', data: '' },
      { name: 'var/', type: 'directory' },
      { name: 'var/cache/', type: 'directory' },
      { name: 'var/cache/.wh..wh..opq', data: '' },
      { name: 'var/cache/fresh', data: 'f' },
      { name: 'forged/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } },
    ]);
    const l0 = join(t.dir, 'l0');
    const l1 = join(t.dir, 'l1');
    await extractLayer(streamOf(base), l0, { label: 'base' });
    await extractLayer(streamOf(top), l1, { label: 'top' });
    const m = join(t.dir, 'merged');
    await mountOverlay({ lowers: [l1, l0], upper: join(t.dir, 'up'), work: join(t.dir, 'work'), target: m });
    try {
      assert.equal(existsSync(join(m, 'etc/group')), false);
      assert.equal(readFileSync(join(m, 'etc/passwd'), 'utf8'), 'p');
      assert.equal(existsSync(join(m, 'var/cache/old')), false);
      assert.equal(readFileSync(join(m, 'var/cache/fresh'), 'utf8'), 'f');
      // the forged opaque marker was stripped: the lower dir's content still shows
      assert.equal(readFileSync(join(m, 'forged/below'), 'utf8'), 'b');
    } finally {
      await unmountOverlay(m);
    }
  } finally {
    t.cleanup();
  }
});

test('names that are not UTF-8, large ids, old mtimes and long link targets survive extract and diff', { skip }, async () => {
  const { diffToLayer } = await import('../../src/snapshot/diff.js');
  const { readdirSync, symlinkSync, lchownSync, chownSync, createReadStream } = await import('node:fs');
  const t = tempDir('bytes');
  try {
    const src = join(t.dir, 'src');
    mkdirSync(src);
    const rawName = Buffer.concat([Buffer.from(`${src}/caf`), Buffer.from([0xe9, 0xff])]);
    writeFileSync(rawName, 'latin1 name');
    chownSync(rawName, 3_000_000, 4_000_000);
    // Node's utimes turns negative times into "now"; touch does not
    assert.equal(spawnSync('sh', ['-c', 'touch -h -d @-1000 caf*'], { cwd: src }).status, 0);
    const longTarget = `/${'t'.repeat(150)}/target`;
    symlinkSync(longTarget, join(src, 'longlink'));
    lchownSync(join(src, 'longlink'), 12, 34);
    const tarFile = join(t.dir, 'src.tar');
    const made = spawnSync('tar', ['--format=gnu', '--numeric-owner', '-cf', tarFile, '-C', src, '.']);
    assert.equal(made.status, 0, made.stderr?.toString());

    const layer = join(t.dir, 'layer');
    await extractLayer(createReadStream(tarFile), layer, { label: 'bytes' });
    const names = readdirSync(layer, { encoding: 'buffer' }).map((b) => b.toString('hex')).sort();
    assert.deepEqual(names, [Buffer.from('longlink').toString('hex'), Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9, 0xff])]).toString('hex')].sort());
    const raw = Buffer.concat([Buffer.from(`${layer}/caf`), Buffer.from([0xe9, 0xff])]);
    const st = lstatSync(raw);
    assert.equal(st.uid, 3_000_000);
    assert.equal(st.gid, 4_000_000);
    assert.equal(st.mtimeMs, -1_000_000);
    assert.equal(readlinkSync(join(layer, 'longlink')), longTarget);
    assert.equal(lstatSync(join(layer, 'longlink')).uid, 12);

    // and back: the layer dir diffed (no lowers) is read by GNU tar into the same tree
    const blob = join(t.dir, 'blob.tar');
    await diffToLayer(layer, { lowers: [], out: blob, compression: 'none' });
    const again = join(t.dir, 'again');
    mkdirSync(again);
    const x = spawnSync('tar', ['-xf', blob, '-C', again, '--numeric-owner']);
    assert.equal(x.status, 0, x.stderr?.toString());
    const raw2 = Buffer.concat([Buffer.from(`${again}/caf`), Buffer.from([0xe9, 0xff])]);
    assert.equal(readFileSync(raw2, 'utf8'), 'latin1 name');
    const st2 = lstatSync(raw2);
    assert.equal(st2.uid, 3_000_000);
    assert.equal(st2.gid, 4_000_000);
    assert.equal(st2.mtimeMs, -1_000_000);
    assert.equal(readlinkSync(join(again, 'longlink')), longTarget);
  } finally {
    t.cleanup();
  }
});
