// The shared base images: busybox built by our own code (checked with umoci's unpacker), cached and
// reproducible; the Debian minbase built once with mmdebstrap and pushable.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readOciLayout } from '../../src/image/oci-layout.js';
import { MediaTypes, parseImageConfig, parseManifest } from '../../src/image/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { parseReference } from '../../src/registry/reference.js';
import { BaseImageUnavailable, busyboxLayout, debianLayout, pushBusybox, pushDebian, testCacheRoot } from '../helpers/base-images.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';

let work: string;
let reg: TestRegistry;
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'strata-base-test-'));
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('busybox layout: the rootfs umoci unpacks has busybox, applets, users and the right modes', async () => {
  const dir = await busyboxLayout();
  assert.ok(dir.startsWith(testCacheRoot()), dir);
  assert.equal(await busyboxLayout(), dir, 'cached per process');
  assert.equal(execFileSync('umoci', ['ls', '--layout', dir], { encoding: 'utf8' }).trim(), 'latest');

  const rootfs = join(work, 'rootfs');
  execFileSync('umoci', ['raw', 'unpack', '--image', `${dir}:latest`, rootfs]);
  const bin = lstatSync(join(rootfs, 'bin/busybox'));
  assert.ok(bin.isFile());
  assert.equal(bin.mode & 0o7777, 0o755);
  assert.ok(readFileSync(join(rootfs, 'bin/busybox')).equals(readFileSync('/bin/busybox')));
  for (const applet of ['bin/sh', 'bin/ls', 'usr/bin/env', 'sbin/ifconfig']) {
    assert.equal(readlinkSync(join(rootfs, applet)), '/bin/busybox', applet);
  }
  assert.match(readFileSync(join(rootfs, 'etc/passwd'), 'utf8'), /^root:x:0:0:root:\/root:\/bin\/sh$/m);
  assert.match(readFileSync(join(rootfs, 'etc/passwd'), 'utf8'), /^app:x:1000:1000:app:\/home\/app:\/bin\/sh$/m);
  assert.match(readFileSync(join(rootfs, 'etc/passwd'), 'utf8'), /^nobody:x:65534:65534:/m);
  assert.match(readFileSync(join(rootfs, 'etc/group'), 'utf8'), /^app:x:1000:$/m);
  assert.equal(lstatSync(join(rootfs, 'tmp')).mode & 0o7777, 0o1777);
  assert.equal(lstatSync(join(rootfs, 'root')).mode & 0o7777, 0o700);
  const home = lstatSync(join(rootfs, 'home/app'));
  assert.deepEqual([home.uid, home.gid], [1000, 1000]);
  assert.ok(!existsSync(join(rootfs, 'proc')) && !existsSync(join(rootfs, 'sys')), 'no /proc or /sys: runtimes create them');

  const img = await readOciLayout(dir, 'latest');
  const config = parseImageConfig(img.config);
  assert.deepEqual(config.config, { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] });
  assert.equal(config.architecture, 'amd64');
  assert.equal(config.os, 'linux');
  assert.equal(parseManifest(img.manifest).layers[0]!.mediaType, MediaTypes.ociLayerGzip);
});

test('busybox layout is reproducible: a fresh cache builds the same digest', async () => {
  const dir = await busyboxLayout();
  const digest = (await readOciLayout(dir, 'latest')).manifestDigest;
  const helper = fileURLToPath(new URL('../helpers/base-images.js', import.meta.url));
  const script = `import(${JSON.stringify(helper)}).then(async (m) => { const d = await m.busyboxLayout(); process.stdout.write(d); })`;
  const fresh = join(work, 'fresh-cache');
  const otherDir = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, STRATA_TEST_CACHE: fresh } });
  assert.ok(otherDir.startsWith(fresh), otherDir);
  assert.equal((await readOciLayout(otherDir, 'latest')).manifestDigest, digest);
});

test('pushBusybox pushes the layout image; the registry serves the same digest', async () => {
  const { ref, digest } = await pushBusybox(reg.host);
  assert.equal(ref, `${reg.host}/busybox:latest`);
  assert.equal(digest, (await readOciLayout(await busyboxLayout(), 'latest')).manifestDigest);
  assert.equal((await new RegistryClient().resolve(parseReference(ref))).digest, digest);
  const other = await pushBusybox(reg.host, 'tools/bb', '1.0');
  assert.equal(other.digest, digest);
  const inspect = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${other.ref}`], { encoding: 'utf8' })) as { Digest: string };
  assert.equal(inspect.Digest, digest);
});

test('debian layout: built once with mmdebstrap, one gzip layer, pushable', { timeout: 15 * 60_000 }, async (t) => {
  let dir: string;
  try {
    dir = await debianLayout();
  } catch (e) {
    if (e instanceof BaseImageUnavailable) return t.skip(e.message);
    throw e;
  }
  assert.equal(dir, join(testCacheRoot(), 'debian-bookworm'));
  const img = await readOciLayout(dir, 'bookworm', { verifyLayers: false });
  assert.equal(img.layers.length, 1);
  assert.equal(img.layers[0]!.mediaType, MediaTypes.ociLayerGzip);
  assert.ok(img.layers[0]!.size > 10_000_000, 'a real rootfs');
  const listing = execFileSync('sh', ['-c', `tar -tzf ${img.blobs.path(img.layers[0]!.digest)} | head -400`], { encoding: 'utf8', maxBuffer: 16 << 20 });
  assert.match(listing, /^\.\/etc\/debian_version$/m);
  assert.doesNotMatch(listing, /^\.\/dev\/./m, 'no device nodes');

  const pushed = await pushDebian(reg.host);
  assert.equal(pushed.ref, `${reg.host}/debian:bookworm`);
  assert.equal(pushed.digest, img.manifestDigest);
  const resolved = await new RegistryClient().resolve(parseReference(pushed.ref));
  assert.equal(resolved.digest, img.manifestDigest);
});
