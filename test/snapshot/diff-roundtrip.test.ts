// The whole cycle a build step goes through: layers unpacked, a step's writes through an overlay,
// the upper diffed into a layer, and that layer unpacked on top giving back the same filesystem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, linkSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync, appendFileSync, createReadStream } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setAttributeSync } from 'fs-xattr';
import { extractLayer } from '../../src/snapshot/extract.js';
import { diffToLayer } from '../../src/snapshot/diff.js';
import { mountOverlay, unmountOverlay } from '../../src/snapshot/overlay.js';
import { buildTar, hardlinkGroups, isRoot, parseTar, pathOrder, sh, snapshotTree, streamOf, tempDir, treeDifferences } from './helpers.js';

const skip = !isRoot && 'needs root';

async function baseLayers(dir: string): Promise<{ l0: string; l1: string }> {
  const l0 = join(dir, 'l0');
  const l1 = join(dir, 'l1');
  await extractLayer(
    streamOf(
      await buildTar([
        { name: 'bin/', type: 'directory' },
        { name: 'bin/busybox', data: 'BUSYBOX', mode: 0o755, mtime: 1_500_000_000 },
        { name: 'bin/sh', type: 'symlink', linkname: '/bin/busybox' },
        { name: 'bin/ls', type: 'symlink', linkname: 'busybox' },
        { name: 'etc/', type: 'directory' },
        { name: 'etc/passwd', data: 'root:x:0:0::/root:/bin/sh\n' },
        { name: 'etc/group', data: 'root:x:0:\n' },
        { name: 'usr/', type: 'directory' },
        { name: 'usr/lib/', type: 'directory' },
        { name: 'usr/lib/a.so', data: 'ELF' },
        { name: 'usr/lib/a.so.1', type: 'link', linkname: 'usr/lib/a.so' },
        { name: 'var/', type: 'directory' },
        { name: 'var/cache/', type: 'directory' },
        { name: 'var/cache/x', data: 'x' },
        { name: 'var/cache/sub/', type: 'directory' },
        { name: 'var/cache/sub/y', data: 'y' },
        { name: 'opt/', type: 'directory' },
        { name: 'opt/app/', type: 'directory', mode: 0o750, uid: 1000, gid: 1000 },
        { name: 'opt/app/main', data: 'main', uid: 1000, gid: 1000, pax: { 'SCHILY.xattr.user.role': 'app' } },
        { name: 'opt/app/lib/', type: 'directory' },
        { name: 'opt/app/lib/dep', data: 'dep' },
        { name: 'data/', type: 'directory', pax: { 'SCHILY.xattr.user.color': 'blue' } },
        { name: 'data/keep', data: 'k' },
        { name: 'srv/', type: 'directory' },
        { name: 'srv/old/', type: 'directory' },
        { name: 'srv/old/file1', data: '1' },
        { name: 'tmp/', type: 'directory', mode: 0o1777 },
        { name: 'tmp/junk', data: 'junk' },
        { name: 'mnt/', type: 'directory' },
      ]),
    ),
    l0,
    { label: 'l0' },
  );
  await extractLayer(
    streamOf(
      await buildTar([
        { name: 'tmp/', type: 'directory', mode: 0o1777 },
        { name: 'tmp/.wh.junk', data: '' },
        { name: 'srv/', type: 'directory' },
        { name: 'srv/old/', type: 'directory' },
        { name: 'srv/old/.wh..wh..opq', data: '' },
        { name: 'srv/old/new1', data: 'n1' },
        { name: 'etc/', type: 'directory' },
        { name: 'etc/motd', data: 'hello', pax: { 'SCHILY.xattr.trusted.overlay.origin': 'forged', 'SCHILY.xattr.user.lang': 'en' } },
      ]),
    ),
    l1,
    { label: 'l1' },
  );
  return { l0, l1 };
}

/** The writes of a typical RUN step, done through the merged dir. */
function stepWrites(m: string): void {
  appendFileSync(join(m, 'etc/passwd'), 'app:x:1000:1000::/opt/app:/bin/sh\n'); // modify a lower file
  unlinkSync(join(m, 'etc/group')); // delete a lower file -> whiteout
  rmSync(join(m, 'var/cache'), { recursive: true }); // rm -rf a lower dir and recreate -> opaque
  mkdirSync(join(m, 'var/cache'));
  writeFileSync(join(m, 'var/cache/new'), 'fresh');
  chmodSync(join(m, 'bin/busybox'), 0o700); // metadata-only copy-up
  writeFileSync(join(m, 'usr/lib/b.so'), 'ELF2'); // hard links inside the upper
  linkSync(join(m, 'usr/lib/b.so'), join(m, 'usr/lib/b.so.2'));
  linkSync(join(m, 'etc/passwd'), join(m, 'etc/passwd-')); // a link to a copied-up file
  sh('mv opt/app opt/app2', m); // EXDEV: copy + whiteout
  symlinkSync('../app2/main', join(m, 'opt/main-link'));
  writeFileSync(join(m, 'opt/tagged'), 't');
  setAttributeSync(join(m, 'opt/tagged'), 'user.tag', Buffer.from([0, 1, 2, 255]));
  spawnSync('mkfifo', [join(m, 'opt/pipe')]);
  // what runtimes leave: mount point stubs, new and inside existing dirs
  for (const d of ['proc', 'dev', 'sys', 'run/secrets/token', 'data/mp', 'mnt/cache']) mkdirSync(join(m, d), { recursive: true });
  // a dir the step created on purpose that happens to be empty
  mkdirSync(join(m, 'empty-by-choice'));
}

test('diff of a step round-trips: the layer on top of its lowers gives the same filesystem', { skip }, async () => {
  const t = tempDir('roundtrip');
  try {
    const { l0, l1 } = await baseLayers(t.dir);
    const upper = join(t.dir, 'upper');
    const m = join(t.dir, 'merged');
    await mountOverlay({ lowers: [l1, l0], upper, work: join(t.dir, 'work'), target: m });
    const mountpoints = ['/run/secrets/token', '/data/mp', '/mnt/cache'];
    let before;
    try {
      // the merged view of the two unpacked layers honours whiteouts and opaque dirs
      assert.equal(existsSync(join(m, 'tmp/junk')), false);
      assert.equal(existsSync(join(m, 'srv/old/file1')), false);
      assert.equal(readFileSync(join(m, 'srv/old/new1'), 'utf8'), 'n1');
      stepWrites(m);
      const server = createServer();
      await new Promise<void>((r) => server.listen(join(m, 'opt/sock.listen'), r));
      linkSync(join(m, 'opt/sock.listen'), join(m, 'opt/sock')); // libuv unlinks its own name on close
      await new Promise((r) => server.close(r));
      assert.ok(lstatSync(join(upper, 'opt/sock')).isSocket());
      before = snapshotTree(m);
    } finally {
      await unmountOverlay(m);
    }

    const blob = join(t.dir, 'layer.tar.gz');
    const r = await diffToLayer(upper, { lowers: [l1, l0], out: blob, compression: 'gzip', dropEmptyMountpoints: mountpoints });
    assert.equal(r.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.equal(r.empty, false);
    assert.deepEqual(r.dropped.sort(), ['/data', '/data/mp', '/dev', '/mnt', '/mnt/cache', '/proc', '/run', '/run/secrets', '/run/secrets/token', '/sys']);
    assert.equal(existsSync(`${blob}.tmp`), false);
    const bytes = readFileSync(blob);
    assert.equal(r.size, bytes.length);
    assert.equal(r.digest, `sha256:${(await import('node:crypto')).createHash('sha256').update(bytes).digest('hex')}`);

    const entries = await parseTar(bytes);
    const names = entries.map((e) => e.name);
    assert.deepEqual(names, [...names].sort(pathOrder), 'entries are in path order');
    const byName = new Map(entries.map((e) => [e.name, e]));
    const expectNames = [
      'bin/',
      'bin/busybox',
      'empty-by-choice/',
      'etc/',
      'etc/.wh.group',
      'etc/passwd',
      'etc/passwd-',
      'opt/',
      'opt/.wh.app',
      'opt/app2/',
      'opt/app2/lib/',
      'opt/app2/lib/dep',
      'opt/app2/main',
      'opt/main-link',
      'opt/pipe',
      'opt/tagged',
      'usr/',
      'usr/lib/',
      'usr/lib/b.so',
      'usr/lib/b.so.2',
      'var/',
      'var/cache/',
      'var/cache/.wh..wh..opq',
      'var/cache/new',
    ];
    assert.deepEqual(names, expectNames);
    assert.equal(byName.get('etc/.wh.group')!.type, 'file');
    assert.equal(byName.get('etc/.wh.group')!.size, 0);
    assert.equal(byName.get('var/cache/.wh..wh..opq')!.type, 'file');
    assert.equal(byName.get('bin/busybox')!.mode, 0o700);
    assert.equal(byName.get('etc/passwd')!.data.toString(), 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/opt/app:/bin/sh\n');
    assert.equal(byName.get('etc/passwd-')!.type, 'link');
    assert.equal(byName.get('etc/passwd-')!.linkname, 'etc/passwd');
    assert.equal(byName.get('usr/lib/b.so.2')!.type, 'link');
    assert.equal(byName.get('usr/lib/b.so.2')!.linkname, 'usr/lib/b.so');
    assert.equal(byName.get('opt/main-link')!.linkname, '../app2/main');
    assert.equal(byName.get('opt/pipe')!.type, 'fifo');
    const app2 = byName.get('opt/app2/')!;
    assert.equal(app2.mode, 0o750);
    assert.equal(app2.uid, 1000);
    assert.equal(byName.get('opt/app2/main')!.pax['SCHILY.xattr.user.role'], 'app');
    for (const e of entries) {
      assert.equal(e.uname, '', e.name);
      assert.equal(e.gname, '', e.name);
      for (const key of Object.keys(e.pax)) {
        assert.ok(!/^SCHILY\.xattr\.(trusted|user)\.overlay\./.test(key), `${e.name} carries ${key}`);
        assert.ok(!['atime', 'ctime'].includes(key), `${e.name} carries ${key}`);
      }
    }
    // GNU tar reads the layer too, binary xattr included
    const listing = spawnSync('tar', ['-tvzf', blob, '--xattrs'], { encoding: 'utf8' });
    assert.equal(listing.status, 0, listing.stderr);

    // the new layer unpacked on top of its lowers shows what the step saw
    const l2 = join(t.dir, 'l2');
    const x = await extractLayer(createReadStream(blob), l2, { label: 'l2' });
    assert.equal(x.diffId, r.diffId);
    const m2 = join(t.dir, 'merged2');
    await mountOverlay({ lowers: [l2, l1, l0], upper: join(t.dir, 'upper2'), work: join(t.dir, 'work2'), target: m2 });
    try {
      const after = snapshotTree(m2);
      const diffs = treeDifferences(before, after).map((d) => d.split(':')[0]!).sort();
      // only the dropped stubs, the socket and data/ (its copy-up only bumped its mtime) differ
      assert.deepEqual(diffs, ['data', 'data/mp', 'dev', 'mnt', 'mnt/cache', 'opt/sock', 'proc', 'run', 'run/secrets', 'run/secrets/token', 'sys']);
      assert.equal(before.get('data')!.mtimeSec === after.get('data')!.mtimeSec, false);
      assert.deepEqual({ ...before.get('data')!, mtimeSec: 0, ino: 0 }, { ...after.get('data')!, mtimeSec: 0, ino: 0 });
      assert.deepEqual(hardlinkGroups(after), hardlinkGroups(before));
      assert.deepEqual(hardlinkGroups(after), [['etc/passwd', 'etc/passwd-'], ['usr/lib/a.so', 'usr/lib/a.so.1'], ['usr/lib/b.so', 'usr/lib/b.so.2']]);
      assert.equal(after.get('opt/tagged')!.xattrs['user.tag'], '000102ff');
      assert.equal(after.get('etc/motd')!.xattrs['user.lang'], Buffer.from('en').toString('hex'));
      assert.equal(existsSync(join(m2, 'var/cache/x')), false);
      assert.equal(existsSync(join(m2, 'opt/app')), false);
    } finally {
      await unmountOverlay(m2);
    }
  } finally {
    t.cleanup();
  }
});

test('diffToLayer reports an upper holding only mount stubs as empty, and can prune them', { skip }, async () => {
  const t = tempDir('empty');
  try {
    const { l0, l1 } = await baseLayers(t.dir);
    const upper = join(t.dir, 'upper');
    const m = join(t.dir, 'merged');
    await mountOverlay({ lowers: [l1, l0], upper, work: join(t.dir, 'work'), target: m });
    try {
      for (const d of ['proc', 'dev', 'sys', 'etc/resolv.conf.d', 'data/mp']) mkdirSync(join(m, d));
    } finally {
      await unmountOverlay(m);
    }
    const r = await diffToLayer(upper, {
      lowers: [l1, l0],
      out: join(t.dir, 'blob'),
      compression: 'zstd',
      dropEmptyMountpoints: ['/etc/resolv.conf.d', '/data/mp'],
      pruneUpper: true,
    });
    assert.equal(r.empty, true);
    assert.equal(r.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    assert.deepEqual(await parseTar(readFileSync(join(t.dir, 'blob'))), []);
    // data/ and etc/ were only copied up for the stubs: gone from the upper as well
    assert.deepEqual(sh('find . -mindepth 1 | sort', upper), '');

    // a stub the step wrote into is kept, and so is a listed path that exists below
    const upper2 = join(t.dir, 'upper2');
    await mountOverlay({ lowers: [l1, l0], upper: upper2, work: join(t.dir, 'work2'), target: m });
    try {
      mkdirSync(join(m, 'proc'));
      writeFileSync(join(m, 'proc', 'oops'), '');
      mkdirSync(join(m, 'srv/old/stub'));
      chmodSync(join(m, 'mnt'), 0o700);
    } finally {
      await unmountOverlay(m);
    }
    const r2 = await diffToLayer(upper2, { lowers: [l1, l0], out: join(t.dir, 'blob2'), compression: 'none', dropEmptyMountpoints: ['/srv/old/stub', '/mnt'] });
    assert.equal(r2.empty, false);
    assert.equal(r2.digest, r2.diffId);
    assert.deepEqual(r2.dropped, ['/srv/old/stub', '/srv/old', '/srv']);
    const entries = await parseTar(readFileSync(join(t.dir, 'blob2')));
    assert.deepEqual(entries.map((e) => e.name), ['mnt/', 'proc/', 'proc/oops']);
    assert.equal(entries[0]!.mode, 0o700);
  } finally {
    t.cleanup();
  }
});
