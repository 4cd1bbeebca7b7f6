// Layers from blobs kept as EROFS images (src/snapshot/layer-image.ts) against the same layers
// unpacked into directories (the fallback): what a step on them sees, what it commits, digest
// failures, a layer the image cannot hold, and the fallback when images cannot be mounted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { appendFile, chmod, mkdir, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { Store, type LayerInfo } from '../../src/cache/store.js';
import { Materializer } from '../../src/solver/materialize.js';
import { RegistryClient } from '../../src/registry/client.js';
import { mountChain } from '../../src/solver/mounts.js';
import { commitUpper } from '../../src/solver/commit.js';
import { extractLayer } from '../../src/snapshot/extract.js';
import { layerImageSupport, resetLayerImageSupport, writeLayerImage } from '../../src/snapshot/layer-image.js';
import { mountLayerImage, unmountLayerImages } from '../../src/snapshot/layer-mount.js';
import { STRATA_BIN, expectOk } from '../build/harness.js';
import { busyboxContext, machines, type Machine } from '../share/support.js';
import { buildTar, hardlinkGroups, isRoot, snapshotTree, streamOf, tempDir, treeDifferences, type NodeInfo, type TarSpec } from './helpers.js';

const skip = !isRoot ? 'needs root' : !layerImageSupport() ? 'needs EROFS in the kernel' : false;
const GZIP_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Runs `fn` with layer images on (or off: STRATA_LAYER_IMAGES=0), probing again before and after. */
async function withImages<T>(on: boolean, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.STRATA_LAYER_IMAGES;
  if (on) delete process.env.STRATA_LAYER_IMAGES;
  else process.env.STRATA_LAYER_IMAGES = '0';
  resetLayerImageSupport();
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.STRATA_LAYER_IMAGES;
    else process.env.STRATA_LAYER_IMAGES = saved;
    resetLayerImageSupport();
  }
}

/** Mount points at or below `dir`. */
function mountsBelow(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** The base layer, laid down as a plain directory layer (as a layer strata built itself would be). */
async function baseLayer(store: Store): Promise<LayerInfo> {
  const tar = await buildTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/gone', data: 'deleted by the layer above' },
    { name: 'etc/keep', data: 'kept' },
    { name: 'var/', type: 'directory' },
    { name: 'var/cache/', type: 'directory' },
    { name: 'var/cache/old', data: 'hidden by an opaque dir' },
    { name: 'opt/', type: 'directory' },
    { name: 'opt/old', data: 'hidden by a late opaque marker' },
    { name: 'home/', type: 'directory' },
    { name: 'home/user/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
    { name: 'home/user/old', data: 'hidden: the dir was deleted and made again' },
    { name: 'bin/', type: 'directory' },
    { name: 'bin/base', data: 'from the base' },
  ]);
  const dir = store.tmpPath('base');
  const r = await extractLayer(streamOf(tar), dir, { label: 'base' });
  const info: LayerInfo = { diffId: r.diffId, digest: sha(tar), size: tar.length, mediaType: 'application/vnd.oci.image.layer.v1.tar' };
  await store.putBlob(tar, info.mediaType);
  await store.adoptLayer(dir, info);
  return info;
}

/** The layer under test: every kind of entry, whiteouts, opaque dirs (one marked after its entries). */
async function importedTar(): Promise<Buffer> {
  const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex').toString('latin1');
  return buildTar([
    { name: 'etc/', type: 'directory', mtime: 1_500_000_000 },
    { name: 'etc/.wh.gone', data: '' },
    { name: 'etc/new', data: 'new file', uid: 1234, gid: 5678, mtime: 1_234_567_890 },
    { name: 'var/', type: 'directory' },
    { name: 'var/cache/', type: 'directory', mode: 0o751 },
    { name: 'var/cache/.wh..wh..opq', data: '' },
    { name: 'var/cache/fresh', data: 'fresh' },
    { name: 'opt/', type: 'directory', mode: 0o750, uid: 1000, mtime: 1_400_000_000 },
    { name: 'opt/late', data: 'before the opaque marker' },
    { name: 'opt/.wh..wh..opq', data: '' },
    { name: 'home/', type: 'directory' },
    { name: 'home/.wh.user', data: '' },
    { name: 'home/user/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
    { name: 'home/user/new', data: 'only this is left' },
    { name: 'bin/', type: 'directory' },
    { name: 'bin/tool', data: 'TOOL', mode: 0o4755, pax: { 'SCHILY.xattr.user.color': 'blue', 'SCHILY.xattr.security.capability': cap } },
    { name: 'bin/tool-hardlink', type: 'link', linkname: 'bin/tool' },
    { name: 'bin/sh', type: 'symlink', linkname: '/bin/tool' },
    { name: 'bin/rel', type: 'symlink', linkname: 'tool' },
    { name: 'bin/sgid', data: 'sgid', mode: 0o2711, gid: 42 },
    { name: 'dev/', type: 'directory' },
    { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'dev/loop9', type: 'block-device', devmajor: 7, devminor: 9, mode: 0o660 },
    { name: 'run/fifo', type: 'fifo', mode: 0o600 },
    { name: 'srv/deep/implicit/file', data: 'no parent entries' },
    { name: `long/${'d'.repeat(120)}/${'f'.repeat(120)}`, data: 'long name' },
    { name: 'big', data: Buffer.alloc(300_000, 7) },
  ]);
}

/** Puts a gzip blob in the store and declares its layer, as an image pull or a cache import does. */
async function declare(store: Store, tar: Buffer): Promise<LayerInfo> {
  const gz = zlib.gzipSync(tar);
  const info: LayerInfo = { diffId: sha(tar), digest: sha(gz), size: gz.length, mediaType: GZIP_LAYER };
  await store.putBlob(gz, GZIP_LAYER);
  listLayer(store, info);
  return info;
}

/** A cache folder holding `bytes` as the blob `digest` (whether they match it or not). */
function cacheFolder(dir: string, digest: string, bytes: Buffer): string {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
  return dir;
}

/** Declares a layer not yet on disk, as a pull or a cache import does; with `cacheDir`, its blob is listed there. */
function listLayer(store: Store, info: LayerInfo, cacheDir?: string): void {
  store.db
    .prepare('INSERT INTO layers(diff_id,blob_digest,size,media_type,unpacked,created,last_used) VALUES (?,?,?,?,0,?,?)')
    .run(info.diffId, info.digest, info.size, info.mediaType, store.now(), store.now());
  if (cacheDir) store.db.prepare('INSERT INTO layer_sources(diff_id,source) VALUES (?,?)').run(info.diffId, JSON.stringify({ kind: 'local', dir: cacheDir }));
}

interface Observed {
  tree: Map<string, NodeInfo>;
  links: string[][];
  committed: string | undefined;
  image: boolean;
  dir: boolean;
}

/** Materializes the layer on a base, looks at it through an overlay, changes things, commits. */
async function observe(root: string, images: boolean): Promise<Observed> {
  return withImages(images, async () => {
    const store = Store.open(root);
    try {
      const base = await baseLayer(store);
      const top = await declare(store, await importedTar());
      await new Materializer(store, new RegistryClient()).ensureUnpacked(top);
      assert.ok(store.layerReady(top.diffId));
      const m = await mountChain(store, [base, top], 'step');
      let tree: Map<string, NodeInfo>;
      try {
        tree = snapshotTree(m.merged);
        // A step on the layer: copy-ups of data and metadata, a deletion, new entries.
        await appendFile(join(m.merged, 'etc/new'), 'appended\n');
        await chmod(join(m.merged, 'bin/tool'), 0o755);
        await unlink(join(m.merged, 'bin/tool-hardlink'));
        await unlink(join(m.merged, 'dev/null'));
        await writeFile(join(m.merged, 'var/cache/more'), 'more');
        await mkdir(join(m.merged, 'opt/sub'));
        await rm(join(m.merged, 'home/user'), { recursive: true });
      } catch (e) {
        await m.release();
        throw e;
      }
      await m.release({ keepUpper: true });
      // Times of what the step changed are clamped, so two runs commit the same bytes.
      const layer = await commitUpper(store, m.upper, m.lowers, { compression: 'gzip', mountpoints: [], sourceDateEpoch: 1_700_000_000 });
      return {
        tree,
        links: hardlinkGroups(tree),
        committed: layer?.diffId,
        image: existsSync(store.layerImage(top.diffId)),
        dir: existsSync(store.layerDir(top.diffId)),
      };
    } finally {
      store.close();
      assert.deepEqual(mountsBelow(root), [], 'no mount is left in the store once it is closed');
    }
  });
}

/** A new store in a temp dir for `fn` (which gets the dir too), closed and removed after. */
async function withStore(name: string, fn: (store: Store, dir: string) => Promise<void>): Promise<void> {
  const t = tempDir(name);
  try {
    const store = Store.open(join(t.dir, 'store'));
    try {
      await fn(store, t.dir);
    } finally {
      store.close();
    }
  } finally {
    t.cleanup();
  }
}

test('an imported layer kept as an image shows a step exactly what the unpacked layer shows, and the step commits the same layer', { skip }, async () => {
  const t = tempDir('image-same');
  try {
    const image = await observe(join(t.dir, 'image'), true);
    const unpacked = await observe(join(t.dir, 'unpacked'), false);
    assert.equal(image.image, true, 'the layer is an image file');
    assert.equal(image.dir, false, 'and no directory of files');
    assert.equal(unpacked.image, false);
    assert.equal(unpacked.dir, true);

    assert.deepEqual(treeDifferences(image.tree, unpacked.tree), []);
    assert.deepEqual(image.links, [['bin/tool', 'bin/tool-hardlink']]);
    assert.deepEqual(image.links, unpacked.links);
    // What the layers say, as seen through the overlay.
    const t1 = image.tree;
    assert.equal(t1.has('etc/gone'), false, 'whiteout hides the base file');
    assert.equal(t1.get('etc/keep')?.type, 'file');
    assert.deepEqual([...t1.keys()].filter((p) => p.startsWith('var/cache/')), ['var/cache/fresh'], 'opaque dir');
    assert.deepEqual([...t1.keys()].filter((p) => p.startsWith('opt/')), ['opt/late'], 'opaque marker after the entries');
    assert.deepEqual([...t1.keys()].filter((p) => p.startsWith('home/user/')), ['home/user/new'], 'dir deleted and made again');
    assert.equal(t1.get('bin/tool')?.mode, 0o4755);
    assert.deepEqual(t1.get('bin/tool')?.xattrs, { 'security.capability': '0100000200200000000000000000000000000000', 'user.color': Buffer.from('blue').toString('hex') });
    assert.equal(t1.get('bin/sgid')?.mode, 0o2711);
    assert.equal(t1.get('bin/sh')?.target, '/bin/tool');
    assert.equal(t1.get('dev/null')?.rdev, (1 << 8) | 3);
    assert.equal(t1.get('dev/loop9')?.type, 'block');
    assert.equal(t1.get('run/fifo')?.type, 'fifo');
    assert.equal(t1.get('etc/new')?.uid, 1234);
    assert.equal(t1.get('etc/new')?.mtimeSec, 1_234_567_890);
    assert.equal(t1.get('opt')?.mtimeSec, 1_400_000_000);
    assert.equal(t1.get('bin/base')?.type, 'file', 'the base shows through');

    assert.ok(image.committed, 'the step made a layer');
    assert.equal(image.committed, unpacked.committed, 'the same layer digest on an image as on a directory');
  } finally {
    t.cleanup();
  }
});

test('the image of a layer with large directories, odd names, replaced entries and extreme times matches the unpacked layer', { skip }, async () => {
  const t = tempDir('image-edges');
  try {
    const specs: TarSpec[] = [{ name: 'big/', type: 'directory' }];
    // About 20 blocks of directory entries, in an order that is not the sorted one.
    for (let i = 599; i >= 0; i--) specs.push({ name: `big/${String(i).padStart(4, '0')}-${'n'.repeat(90)}`, data: i % 7 === 0 ? '' : `file ${i}` });
    specs.push(
      // names that are not UTF-8 (binary strings: one char per byte) sort bytewise
      { name: Buffer.from([0x6f, 0x64, 0x64, 0xe9]).toString('latin1'), data: 'latin1 name' },
      { name: Buffer.from([0x6f, 0x64, 0x64, 0x7e]).toString('latin1'), data: 'tilde' },
      { name: 'A-upper', data: 'before lower case' },
      // a file replaced by a later entry, and a hard link to the first one that keeps it
      { name: 'twice', data: 'first' },
      { name: 'keeps-first', type: 'link', linkname: 'twice' },
      { name: 'twice', data: 'second, and longer' },
      // a file replaced by a directory
      { name: 'was-file', data: 'gone' },
      { name: 'was-file/', type: 'directory', mode: 0o711 },
      { name: 'was-file/inside', data: 'in' },
      { name: 'old', data: 'before 1970', pax: { mtime: '-86400' } },
      { name: 'late', data: 'after 2106', pax: { mtime: '4400000000' } },
      { name: 'owner', data: 'big ids', uid: 2_000_000_000, gid: 3_000_000 },
      { name: 'dirx/', type: 'directory', pax: { 'SCHILY.xattr.user.dir': 'on a directory', 'SCHILY.xattr.trusted.other': 'kept' } },
      { name: 'empty', data: '' },
      { name: 'deep/a/b/c/d/e/f/g', data: 'deep' },
    );
    const tar = await buildTar(specs);
    const dir = join(t.dir, 'unpacked');
    const a = await extractLayer(streamOf(tar), dir, { label: 'edges' });
    const image = join(t.dir, 'layer.erofs');
    const b = await writeLayerImage(streamOf(tar), image, { label: 'edges' });
    assert.equal(b.diffId, a.diffId);
    const at = join(t.dir, 'mnt');
    await mountLayerImage(image, at);
    try {
      const unpacked = snapshotTree(dir);
      const mounted = snapshotTree(at);
      assert.deepEqual(treeDifferences(mounted, unpacked), []);
      assert.deepEqual(hardlinkGroups(mounted), hardlinkGroups(unpacked));
      assert.equal(readFileSync(join(at, 'keeps-first'), 'utf8'), 'first');
      assert.equal(readFileSync(join(at, 'twice'), 'utf8'), 'second, and longer');
      assert.equal(mounted.get('big')!.type, 'dir');
      assert.equal([...mounted.keys()].filter((p) => p.startsWith('big/')).length, 600);
      for (const p of ['late', 'old', 'owner', 'dirx', 'was-file']) {
        const x = statSync(join(at, p));
        const y = statSync(join(dir, p));
        assert.deepEqual([x.mtimeMs, x.uid, x.gid, x.mode, x.nlink], [y.mtimeMs, y.uid, y.gid, y.mode, y.nlink], p);
      }
      // Every name the unpacker made can be looked up by name too (sorted entries: binary search).
      for (const p of unpacked.keys()) assert.ok(existsSync(join(at, p)) || unpacked.get(p)!.type === 'symlink', p);
    } finally {
      await unmountLayerImages([at]);
    }
  } finally {
    t.cleanup();
  }
});

test('a blob whose digest does not match leaves no image, directory, blob or mount behind', { skip }, async () => {
  await withStore('image-bad', async (store, dir) => {
    const tar = await importedTar();
    const gz = zlib.gzipSync(tar);
    const digest = sha(gz);
    const info: LayerInfo = { diffId: sha(tar), digest, size: gz.length, mediaType: GZIP_LAYER };
    // An imported cache folder whose blob was damaged after export: the streamed path.
    const bad = Buffer.from(gz);
    bad[bad.length - 20]! ^= 0xff;
    const cacheDir = cacheFolder(join(dir, 'cache'), digest, bad);
    listLayer(store, info, cacheDir);
    await assert.rejects(new Materializer(store, new RegistryClient()).ensureUnpacked(info), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'CACHE_CORRUPT');
      return true;
    });
    assert.deepEqual(readdirSync(join(store.root, 'layers')), []);
    assert.deepEqual(readdirSync(join(store.root, 'tmp')), []);
    assert.equal(store.hasBlob(digest), false);
    assert.equal(store.layerReady(info.diffId), false);

    // Right bytes, but the record names another diffId: the image made from them goes too.
    const good = cacheFolder(join(dir, 'cache2'), digest, gz);
    const lie: LayerInfo = { ...info, diffId: sha(Buffer.from('another layer')) };
    listLayer(store, lie, good);
    await assert.rejects(new Materializer(store, new RegistryClient()).ensureUnpacked(lie), /unpacks to/);
    assert.deepEqual(readdirSync(join(store.root, 'layers')), []);
    assert.deepEqual(readdirSync(join(store.root, 'tmp')), []);
    assert.deepEqual(mountsBelow(store.root), []);
  });
});

test('a layer the image does not hold exactly (a directory replaced by a file, a sub-second mtime) is unpacked into a directory instead', { skip }, async () => {
  await withStore('image-unsupported', async (store) => {
    const cases: Array<[TarSpec[], (dir: string) => void]> = [
      [
        [
          { name: 'a', data: 'kept' },
          { name: 'd/', type: 'directory' },
          { name: 'd', data: 'a file where the layer had a directory' },
        ],
        (dir) => assert.equal(readFileSync(join(dir, 'd'), 'utf8'), 'a file where the layer had a directory'),
      ],
      [
        [{ name: 'b', data: 'half a second', pax: { mtime: '1600000000.5' } }],
        (dir) => assert.equal(statSync(join(dir, 'b')).mtimeMs, 1_600_000_000_500),
      ],
    ];
    for (const [specs, check] of cases) {
      const info = await declare(store, await buildTar(specs));
      await new Materializer(store, new RegistryClient()).ensureUnpacked(info);
      assert.equal(existsSync(store.layerImage(info.diffId)), false);
      check(store.layerDir(info.diffId));
    }
    assert.deepEqual(readdirSync(join(store.root, 'tmp')), []);
  });
});

test('where an image cannot be mounted (no mount rights), the layer is unpacked and images are off for the process', { skip }, async () => {
  const t = tempDir('image-nomount');
  const savedPath = process.env.PATH;
  try {
    // A mount(8) that refuses EROFS, as in a container without the right to mount, and a mount(2)
    // that does too (layer-mount.ts makes that call through perl).
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'mount'), '#!/bin/sh\ncase "$*" in *erofs*) echo "mount: permission denied" >&2; exit 32;; esac\nexec /usr/bin/mount "$@"\n', { mode: 0o755 });
    writeFileSync(join(bin, 'perl'), '#!/bin/sh\necho "Operation not permitted" >&2\nexit 1\n', { mode: 0o755 });
    process.env.PATH = `${bin}:${savedPath}`;
    resetLayerImageSupport();
    assert.equal(layerImageSupport(), true, 'the probe cannot tell');
    const store = Store.open(join(t.dir, 'store'));
    try {
      const info = await declare(store, await importedTar());
      await new Materializer(store, new RegistryClient()).ensureUnpacked(info);
      assert.equal(existsSync(store.layerImage(info.diffId)), false);
      assert.ok(statSync(store.layerDir(info.diffId)).isDirectory());
      assert.equal(readFileSync(join(store.layerDir(info.diffId), 'bin/tool'), 'utf8'), 'TOOL');
      assert.equal(layerImageSupport(), false, 'images are off for the rest of the process');
      assert.deepEqual(readdirSync(join(store.root, 'tmp')), []);
    } finally {
      store.close();
    }
  } finally {
    process.env.PATH = savedPath;
    resetLayerImageSupport();
    t.cleanup();
  }
});

// ---- through the CLI: an exported cache imported on fresh machines ------------------------------

const EXPORTED = [
  'FROM busybox',
  // a whiteout of a base file, a hard link, symlinks, setuid, a device node, a big file
  'RUN mkdir -p /data/d && echo a > /data/d/a && echo f > /data/f && ln /data/f /data/hl && ln -s f /data/sl && ln -s /etc/passwd /data/abs && chmod 4755 /data/f && mknod /data/null c 1 3 && rm /etc/group && dd if=/dev/urandom of=/data/big bs=65536 count=400 2>/dev/null',
  // an opaque directory: deleted and made again
  'RUN rm -rf /data/d && mkdir /data/d && echo b > /data/d/b',
  '',
].join('\n');
// (/etc itself is left out: the runtime's /etc/hosts and /etc/resolv.conf stubs move its mtime while the step runs.)
const LISTING = 'RUN (find /data -xdev | sort | xargs stat -c "%n %F %a %u %g %s %Y %N %t,%T"; stat -c "%n %a %Y" /etc/passwd; [ -e /etc/group ] || echo group-whited-out; [ /data/f -ef /data/hl ] && echo hard-linked; md5sum /data/big; ls /data/d) > /listing\n';

/** Image files in a store's layers/. */
function images(store: string): string[] {
  return readdirSync(join(store, 'layers')).filter((n) => n.endsWith('.erofs'));
}

test('an imported cache on a fresh machine: images that show what unpacked layers show, no mount outlives a process, prune removes them, kill -9 mid-conversion is harmless', { skip }, async (t) => {
  const [a, b, c, d] = machines(t, 'sq-a', 'sq-b', 'sq-c', 'sq-d');
  const bb = await busyboxContext();
  const cache = join(a.root, 'cache');
  await a.ok(a.context('ctx', { Dockerfile: EXPORTED }), [...bb, '--cache-to', `type=local,dest=${cache},mode=max`]);

  const listing = async (m: Machine, env: Record<string, string> = {}): Promise<string> => {
    const out = join(m.root, `out-${Math.random().toString(36).slice(2)}`);
    const r = await m.ok(m.context('ctx', { Dockerfile: EXPORTED + LISTING }), [...bb, '--cache-from', `type=local,src=${cache}`, '-o', `type=local,dest=${out}`], env);
    assert.ok(r.instructions.filter((s) => s.name.includes('RUN')).slice(0, 2).every((s) => s.cached), `the exported steps are cache hits\n${r.stderr}`);
    return readFileSync(join(out, 'listing'), 'utf8');
  };
  const withImages = await listing(b);
  const unpacked = await listing(c, { STRATA_LAYER_IMAGES: '0' });
  assert.ok(images(b.store).length >= 3, `B keeps the busybox layer and both imported layers as images: ${images(b.store).join(' ')}`);
  assert.deepEqual(images(c.store), [], 'C (images off) unpacked them');
  assert.match(withImages, /^\/data\/f regular file 4755 0 0 /m);
  assert.match(withImages, /^\/data\/null character special file 644 0 0 0 \d+ \/data\/null 1,3$/m);
  assert.match(withImages, /^hard-linked$/m);
  assert.match(withImages, /^group-whited-out$/m, 'the whiteout hides the base file');
  assert.match(withImages, /\nb\n$/, 'the opaque dir holds only the new file');
  // A directory's size (and link count, not listed) depends on the filesystem, not on the layer.
  const dirSizes = (s: string) => s.replace(/^(\S+ directory \d+ \d+ \d+) \d+ /gm, '$1 - ');
  assert.equal(dirSizes(withImages), dirSizes(unpacked), 'the step saw the same files either way');
  assert.deepEqual(mountsBelow(b.root), [], 'nothing stays mounted once the build has exited');

  // A later process (as after a reboot: nothing mounted) mounts the images again; they are not rewritten.
  const before = new Map(images(b.store).map((n) => [n, statSync(join(b.store, 'layers', n)).ino]));
  const again = await b.ok(b.context('ctx2', { Dockerfile: EXPORTED + 'RUN cat /data/d/b /data/f > /x && test -u /data/f\n' }), [...bb, '--cache-from', `type=local,src=${cache}`]);
  assert.equal(again.instructions.at(-1)?.cached, false, 'the new step ran on the images');
  for (const [n, ino] of before) assert.equal(statSync(join(b.store, 'layers', n)).ino, ino, `${n} was reused`);
  assert.deepEqual(mountsBelow(b.root), []);

  // doctor: a store with images is consistent (it mounts one to check); an image no layer row names goes.
  writeFileSync(join(b.store, 'layers', `${'e'.repeat(64)}.erofs`), 'left by a crash');
  const doc = expectOk(await b.strata(['doctor', '--quick']), 'strata doctor');
  assert.match(doc.stdout, /removed unindexed layer image e{64}\.erofs/);
  assert.doesNotMatch(doc.stdout, /cannot be mounted/);
  assert.deepEqual([...before.keys()].filter((n) => !existsSync(join(b.store, 'layers', n))), [], 'the layers\' images stay');
  assert.deepEqual(mountsBelow(b.root), []);

  // du counts the image files (the layers have no directories to measure).
  const du = JSON.parse(expectOk(await b.strata(['du', '--format', 'json']), 'strata du').stdout) as { size: number }[];
  const imageBytes = images(b.store).reduce((n, f) => n + statSync(join(b.store, 'layers', f)).size, 0);
  assert.ok(imageBytes > 26_000_000, `the images hold the 26 MB file: ${imageBytes}`);
  assert.ok(du.reduce((n, r) => n + r.size, 0) >= imageBytes, 'du counts them');

  // prune: the images go with their records; nothing is mounted, nothing left.
  await b.strata(['prune', '--all']).then((r) => expectOk(r, 'strata prune --all'));
  assert.deepEqual(images(b.store), []);
  assert.deepEqual(mountsBelow(b.root), []);

  // kill -9 while an image is being written: the next build works and leaves no temp image.
  const ctxD = d.context('ctx', { Dockerfile: EXPORTED + LISTING });
  const child = spawn(STRATA_BIN, ['build', ctxD, '--progress', 'plain', ...bb, '--cache-from', `type=local,src=${cache}`], { env: { ...process.env, STRATA_ROOT: d.store }, stdio: 'ignore' });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const tmp = join(d.store, 'tmp');
  let caught = false;
  for (let i = 0; i < 3000 && child.exitCode === null; i++) {
    const partial = existsSync(tmp) && readdirSync(tmp).some((n) => n.startsWith('image-') && statSync(join(tmp, n), { throwIfNoEntry: false })?.size);
    if (partial) {
      child.kill('SIGKILL');
      caught = true;
      break;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  await exited;
  t.diagnostic(caught ? 'killed while an image was being written' : 'the build ended before an image was caught half-written');
  const out = join(d.root, 'out');
  await d.ok(ctxD, [...bb, '--cache-from', `type=local,src=${cache}`, '-o', `type=local,dest=${out}`]);
  assert.equal(dirSizes(readFileSync(join(out, 'listing'), 'utf8')), dirSizes(withImages), `after the kill${caught ? '' : ' (the build ended before an image was caught half-written)'}, the layers are whole`);
  assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('image-')), [], 'no temp image is left');
  assert.deepEqual(mountsBelow(d.root), []);
});
