// Exporters checked by the tools that consume their output: skopeo and umoci read the OCI layout,
// podman loads and runs the docker and OCI archives, and readOciLayout reads layouts back.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { StrataError } from '../../src/errors.js';
import { buildIndex, platformOf } from '../../src/image/builders.js';
import { writeDockerArchive } from '../../src/image/docker-archive.js';
import { imageFromManifest, type ExportImage, type ExportIndex } from '../../src/image/image-data.js';
import { writeOciArchive } from '../../src/image/oci-archive.js';
import { layoutBlobPath, layoutBlobSource, parseOciLayoutReference, readOciLayout, writeOciLayout } from '../../src/image/oci-layout.js';
import { pushImage } from '../../src/image/push.js';
import { MediaTypes, parseImageConfig } from '../../src/image/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { parseReference } from '../../src/registry/reference.js';
import { busyboxImage } from '../helpers/base-images.js';
import { assembleImage, dirBlobSource, writeLayer } from '../helpers/layers.js';
import { podman, type Podman } from '../helpers/podman.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';

let work: string;
let store: string;
let bb: ExportImage;
let pm: Podman;
const suffix = randomBytes(4).toString('hex');

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'strata-export-test-'));
  // A caller-owned content store: blobs named by hex digest, as the build cache keeps them.
  store = join(work, 'store');
  mkdirSync(store);
  const layout = await busyboxImage();
  for (const l of layout.layers) copyFileSync(layout.blobs.path(l.digest), join(store, l.digest.slice(7)));
  bb = { ...layout, blobs: dirBlobSource(store) };
  pm = podman();
});
after(() => {
  pm?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

function json<T>(cmd: string, args: string[]): T {
  return JSON.parse(execFileSync(cmd, args, { encoding: 'utf8' })) as T;
}

async function secondImage(): Promise<ExportImage> {
  const layer = await writeLayer(store, [{ name: 'hello.txt', content: 'second image\n' }]);
  const cfg = parseImageConfig(bb.config);
  const base = await busyboxImage();
  const baseLayer = { path: store, digest: base.layers[0]!.digest, diffId: cfg.rootfs.diff_ids[0]!, size: base.layers[0]!.size, descriptor: base.layers[0]! };
  return assembleImage(store, { layers: [baseLayer, layer], config: { Env: cfg.config?.Env, Cmd: ['cat', '/hello.txt'] } });
}

test('writeOciLayout: skopeo and umoci read it; blobs are hard-linked from the store', async () => {
  const dir = join(work, 'layout');
  const desc = await writeOciLayout(dir, bb, { refName: 'v1' });
  assert.equal(desc.digest, bb.manifestDigest);
  assert.equal(readFileSync(join(dir, 'oci-layout'), 'utf8'), '{"imageLayoutVersion":"1.0.0"}');
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  assert.equal(index.schemaVersion, 2);
  assert.deepEqual(index.manifests, [{
    mediaType: MediaTypes.ociManifest, digest: bb.manifestDigest, size: bb.manifest.length,
    annotations: { 'org.opencontainers.image.ref.name': 'v1' },
  }]);
  const layer = bb.layers[0]!;
  assert.equal(statSync(layoutBlobPath(dir, layer.digest)).ino, statSync(bb.blobs.path(layer.digest)).ino, 'hard link');

  const inspect = json<{ Digest: string; Layers: string[]; Architecture: string; Env: string[] }>('skopeo', ['inspect', `oci:${dir}:v1`]);
  assert.equal(inspect.Digest, bb.manifestDigest);
  assert.deepEqual(inspect.Layers, [layer.digest]);
  assert.equal(inspect.Architecture, 'amd64');
  assert.ok(inspect.Env.some((e) => e.startsWith('PATH=')));
  assert.equal(execFileSync('umoci', ['ls', '--layout', dir], { encoding: 'utf8' }).trim(), 'v1');
  const stat = json<{ history: Array<{ layer: { digest: string }; created_by: string }> }>('umoci', ['stat', '--image', `${dir}:v1`, '--json']);
  assert.equal(stat.history[0]!.layer.digest, layer.digest);
  assert.match(stat.history[0]!.created_by, /busybox/);

  // Merging: a second tag is added, re-using a tag moves it, unnamed entries are not duplicated.
  const two = await secondImage();
  await writeOciLayout(dir, two, { refName: 'v2' });
  assert.deepEqual(execFileSync('umoci', ['ls', '--layout', dir], { encoding: 'utf8' }).trim().split('\n').sort(), ['v1', 'v2']);
  await writeOciLayout(dir, two, { refName: 'v1' });
  assert.equal(json<{ Digest: string }>('skopeo', ['inspect', `oci:${dir}:v1`]).Digest, two.manifestDigest);
  await writeOciLayout(dir, bb);
  await writeOciLayout(dir, bb);
  const idx2 = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  assert.equal(idx2.manifests.length, 3);
  assert.equal(idx2.manifests.filter((m) => !m.annotations).length, 1);

  const copied = join(work, 'layout-copy');
  await writeOciLayout(copied, bb, { refName: 'latest', copy: true, imageName: 'example.com/bb:latest' });
  assert.notEqual(statSync(layoutBlobPath(copied, layer.digest)).ino, statSync(bb.blobs.path(layer.digest)).ino, 'copied');
  assert.equal(json<{ Digest: string }>('skopeo', ['inspect', `oci:${copied}:latest`]).Digest, bb.manifestDigest);
});

test('writeOciLayout refuses an image whose layer blob is missing from the store', async () => {
  const broken: ExportImage = { ...bb, blobs: dirBlobSource(join(work, 'empty-store')) };
  await assert.rejects(writeOciLayout(join(work, 'broken'), broken, { refName: 'x' }),
    (e: unknown) => e instanceof StrataError && e.code === 'BLOB_MISSING' && e.message.includes(bb.layers[0]!.digest));
});

test('readOciLayout: by tag, by digest, the only image, platform from an index; errors say what exists', async () => {
  const dir = join(work, 'read-layout');
  const two = await secondImage();
  await writeOciLayout(dir, bb, { refName: 'one' });
  const single = await readOciLayout(dir);
  assert.equal(single.manifestDigest, bb.manifestDigest);
  assert.equal(single.refName, 'one');
  assert.ok(single.config.equals(bb.config));

  await writeOciLayout(dir, two, { refName: 'two' });
  assert.equal((await readOciLayout(dir, 'two')).manifestDigest, two.manifestDigest);
  assert.equal((await readOciLayout(dir, bb.manifestDigest)).manifestDigest, bb.manifestDigest);
  await assert.rejects(readOciLayout(dir), (e: unknown) => e instanceof StrataError && e.code === 'AMBIGUOUS_IMAGE' && /one, two/.test(e.hint ?? ''));
  await assert.rejects(readOciLayout(dir, 'three'), (e: unknown) => e instanceof StrataError && e.code === 'IMAGE_NOT_FOUND' && /no image tagged "three"/.test(e.message) && /one, two/.test(e.hint ?? ''));
  await assert.rejects(readOciLayout(join(work, 'nothing-here')), (e: unknown) => e instanceof StrataError && e.code === 'INVALID_LAYOUT');

  // An index in the layout: the platform picks the manifest.
  const arm = assembleImage(store, { layers: [], architecture: 'arm64', variant: 'v8' });
  await writeOciLayout(dir, arm, { refName: 'arm-only' });
  const idx = buildIndex([
    { mediaType: MediaTypes.ociManifest, digest: bb.manifestDigest, size: bb.manifest.length, platform: platformOf(parseImageConfig(bb.config)) },
    { mediaType: MediaTypes.ociManifest, digest: arm.manifestDigest, size: arm.manifest.length, platform: platformOf(arm.imageConfig) },
  ]);
  writeFileSync(layoutBlobPath(dir, idx.digest), idx.bytes);
  const indexJson = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  indexJson.manifests.push({ mediaType: MediaTypes.ociIndex, digest: idx.digest, size: idx.size, annotations: { 'org.opencontainers.image.ref.name': 'multi' } });
  writeFileSync(join(dir, 'index.json'), JSON.stringify(indexJson));
  const pickedAmd = await readOciLayout(dir, 'multi', { platform: { os: 'linux', architecture: 'amd64' } });
  assert.equal(pickedAmd.manifestDigest, bb.manifestDigest);
  assert.equal(pickedAmd.indexDigest, idx.digest);
  assert.equal((await readOciLayout(dir, 'multi', { platform: { os: 'linux', architecture: 'arm64' } })).manifestDigest, arm.manifestDigest);
  await assert.rejects(readOciLayout(dir, 'multi', { platform: { os: 'linux', architecture: 'riscv64' } }), (e: unknown) => e instanceof StrataError && e.code === 'PLATFORM_NOT_FOUND');

  // A layout written by skopeo reads the same.
  const sk = join(work, 'skopeo-layout');
  execFileSync('skopeo', ['copy', '-q', `oci:${dir}:two`, `oci:${sk}:copied`]);
  const fromSkopeo = await readOciLayout(sk, 'copied');
  assert.equal(fromSkopeo.manifestDigest, two.manifestDigest);
});

test('readOciLayout verifies blob digests', async () => {
  const dir = join(work, 'corrupt-layout');
  await writeOciLayout(dir, bb, { refName: 'x', copy: true });
  const p = layoutBlobPath(dir, bb.layers[0]!.digest);
  const bytes = readFileSync(p);
  bytes[100] ^= 0x55;
  writeFileSync(p, bytes);
  await assert.rejects(readOciLayout(dir, 'x'), (e: unknown) => e instanceof StrataError && e.code === 'DIGEST_MISMATCH' && e.message.includes(bb.layers[0]!.digest));
  // Without layer hashing the (same-size) corruption passes; manifest and config are always checked.
  assert.equal((await readOciLayout(dir, 'x', { verifyLayers: false })).manifestDigest, bb.manifestDigest);
  const cfgPath = layoutBlobPath(dir, bb.configDigest);
  writeFileSync(cfgPath, readFileSync(cfgPath, 'utf8').replace('amd64', 'arm64'));
  await assert.rejects(readOciLayout(dir, 'x', { verifyLayers: false }), (e: unknown) => e instanceof StrataError && e.code === 'DIGEST_MISMATCH');
});

test('writeDockerArchive: docker save layout; podman loads it and runs it', async (t) => {
  const file = join(work, 'docker.tar');
  const name = `localhost/strata-test-docker:${suffix}`;
  await writeDockerArchive(file, bb, { tags: [name, `localhost/strata-test-docker:also-${suffix}`] });
  const listing = execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n');
  const manifest = JSON.parse(execFileSync('tar', ['-xOf', file, 'manifest.json'], { encoding: 'utf8' }));
  assert.deepEqual(manifest, [{
    Config: `${bb.configDigest.slice(7)}.json`,
    RepoTags: [name, `localhost/strata-test-docker:also-${suffix}`],
    Layers: [`${bb.layers[0]!.digest.slice(7)}.tar.gz`],
  }]);
  assert.deepEqual(listing.sort(), [manifest[0].Config, manifest[0].Layers[0], 'manifest.json'].sort());
  assert.equal(execFileSync('tar', ['-xOf', file, manifest[0].Config], { encoding: 'utf8' }), bb.config.toString());
  await assert.rejects(writeDockerArchive(join(work, 'bad.tar'), bb, { tags: [`x@${bb.manifestDigest}`] }), /can only record tags/);

  if (!pm.available) return t.skip(pm.reason);
  pm.track(name);
  pm.track(`localhost/strata-test-docker:also-${suffix}`);
  const load = pm.run(['load', '-i', file]);
  assert.equal(load.status, 0, load.stderr);
  assert.match(load.stdout, new RegExp(`Loaded image.*strata-test-docker:${suffix}`));
  const run = pm.run(['run', '--rm', name, 'sh', '-c', 'grep ^app: /etc/passwd; stat -c %a /tmp; echo strata-docker-ok']);
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'app:x:1000:1000:app:/home/app:/bin/sh\n1777\nstrata-docker-ok\n');
  const user = pm.run(['run', '--rm', '--user', 'app', name, 'id', '-u']);
  assert.equal(user.stdout.trim(), '1000');
});

test('writeDockerArchive with uncompressed layers writes <diffid>.tar and still loads', async (t) => {
  const file = join(work, 'docker-plain.tar');
  const name = `localhost/strata-test-docker-plain:${suffix}`;
  await writeDockerArchive(file, bb, { tags: [name], uncompressed: true });
  const diffId = parseImageConfig(bb.config).rootfs.diff_ids[0]!;
  const manifest = JSON.parse(execFileSync('tar', ['-xOf', file, 'manifest.json'], { encoding: 'utf8' }));
  assert.deepEqual(manifest[0].Layers, [`${diffId.slice(7)}.tar`]);
  const plain = execFileSync('tar', ['-xOf', file, manifest[0].Layers[0]], { maxBuffer: 64 << 20 });
  assert.ok(plain.equals(gunzipSync(readFileSync(bb.blobs.path(bb.layers[0]!.digest)))), 'the layer is the gunzipped blob');

  if (!pm.available) return t.skip(pm.reason);
  pm.track(name);
  const load = pm.run(['load', '-i', file]);
  assert.equal(load.status, 0, load.stderr);
  const run = pm.run(['run', '--rm', name, 'echo', 'plain-ok']);
  assert.equal(run.stdout, 'plain-ok\n', run.stderr);
});

test('writeOciArchive: skopeo inspects it, podman loads and runs it', async (t) => {
  const file = join(work, 'oci.tar');
  const two = await secondImage();
  const name = `localhost/strata-test-oci:${suffix}`;
  await writeOciArchive(file, two, { refName: name });
  const inspect = json<{ Digest: string }>('skopeo', ['inspect', `oci-archive:${file}`]);
  assert.equal(inspect.Digest, two.manifestDigest);
  const listing = execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(listing.slice(0, 2), ['oci-layout', 'index.json']);
  assert.equal(listing.filter((n) => n.startsWith('blobs/sha256/') && n.length > 'blobs/sha256/'.length).length, 4, 'two layers, config, manifest');

  if (!pm.available) return t.skip(pm.reason);
  pm.track(name);
  const load = pm.run(['load', '-i', file]);
  assert.equal(load.status, 0, load.stderr);
  const run = pm.run(['run', '--rm', name]);
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'second image\n');
});

test('pushImage: skopeo copies the pushed image back into a layout with the same digest', async () => {
  let reg: TestRegistry | undefined;
  try {
    reg = await startRegistry();
    const two = await secondImage();
    const refs = [parseReference(`${reg.host}/exp/two:a`), parseReference(`${reg.host}/exp/two:b`)];
    const res = await pushImage(new RegistryClient(), two, refs);
    assert.deepEqual(res.pushed, refs.map((r) => `${r.registry}/${r.repository}:${r.tag}@${two.manifestDigest}`));
    const back = join(work, 'pulled-layout');
    spawnSync('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${reg.host}/exp/two:b`, `oci:${back}:b`], { encoding: 'utf8' });
    const img = await readOciLayout(back, 'b');
    assert.equal(img.manifestDigest, two.manifestDigest);
    assert.ok(img.config.equals(two.config));
  } finally {
    await reg?.stop();
  }
});

async function twoPlatformIndex(): Promise<ExportIndex> {
  const amd = await secondImage();
  const layer = await writeLayer(store, [{ name: 'arch', content: 'arm64\n' }]);
  const arm = assembleImage(store, { layers: [layer], architecture: 'arm64', variant: 'v8', config: { Cmd: ['cat', '/arch'] } });
  const idx = buildIndex([amd, arm].map((img) => ({
    mediaType: MediaTypes.ociManifest, digest: img.manifestDigest, size: img.manifest.length, platform: platformOf(parseImageConfig(img.config)),
  })));
  return { index: idx.bytes, indexDigest: idx.digest, images: [amd, arm] };
}

test('multi-platform: an index exports to a layout and an archive, and pushes', async () => {
  const multi = await twoPlatformIndex();
  const dir = join(work, 'multi-layout');
  const desc = await writeOciLayout(dir, multi, { refName: 'multi' });
  assert.equal(desc.mediaType, MediaTypes.ociIndex);
  assert.equal(desc.digest, multi.indexDigest);
  const raw = execFileSync('skopeo', ['inspect', '--raw', `oci:${dir}:multi`], { encoding: 'utf8' });
  assert.equal(raw, multi.index.toString());
  const armInspect = json<{ Digest: string; Architecture: string }>('skopeo', ['--override-arch', 'arm64', 'inspect', `oci:${dir}:multi`]);
  assert.equal(armInspect.Architecture, 'arm64');
  const arm = await readOciLayout(dir, 'multi', { platform: { os: 'linux', architecture: 'arm64' } });
  assert.equal(arm.manifestDigest, multi.images[1]!.manifestDigest);
  assert.equal(arm.indexDigest, multi.indexDigest);

  const file = join(work, 'multi.tar');
  await writeOciArchive(file, multi, { refName: 'multi' });
  assert.equal(execFileSync('skopeo', ['inspect', '--raw', `oci-archive:${file}:multi`], { encoding: 'utf8' }), multi.index.toString());

  let reg: TestRegistry | undefined;
  try {
    reg = await startRegistry();
    const target = parseReference(`${reg.host}/multi/app:1`);
    const res = await pushImage(new RegistryClient(), multi, [target]);
    assert.equal(res.digest, multi.indexDigest);
    const client = new RegistryClient();
    const got = await client.resolve(target, { os: 'linux', architecture: 'arm64' });
    assert.equal(got.digest, multi.images[1]!.manifestDigest);
    assert.equal(got.indexDigest, multi.indexDigest);
    assert.equal((await client.resolve(target)).digest, multi.images[0]!.manifestDigest);
  } finally {
    await reg?.stop();
  }

  // An index naming a manifest that was not handed over is refused before anything is written.
  const partial: ExportIndex = { ...multi, images: [multi.images[0]!] };
  await assert.rejects(writeOciLayout(join(work, 'partial'), partial), /no image for it was given/);
});

test('imageFromManifest assembles exporter input from a blob store', async () => {
  const dir = join(work, 'from-manifest');
  await writeOciLayout(dir, bb, { refName: 'x' });
  const img = await imageFromManifest(layoutBlobSource(dir), bb.manifest);
  assert.equal(img.manifestDigest, bb.manifestDigest);
  assert.equal(img.configDigest, bb.configDigest);
  assert.ok(img.config.equals(bb.config));
  assert.deepEqual(img.layers, bb.layers);
});

test('parseOciLayoutReference splits oci-layout://DIR[:TAG][@DIGEST]', () => {
  const d = 'sha256:' + 'c'.repeat(64);
  assert.deepEqual(parseOciLayoutReference('oci-layout:///srv/layout'), { dir: '/srv/layout' });
  assert.deepEqual(parseOciLayoutReference('oci-layout://./out:v1'), { dir: './out', tag: 'v1' });
  assert.deepEqual(parseOciLayoutReference(`oci-layout:///srv/l@${d}`), { dir: '/srv/l', digest: d });
  assert.deepEqual(parseOciLayoutReference(`oci-layout:///srv/l:t@${d}`), { dir: '/srv/l', tag: 't', digest: d });
  assert.deepEqual(parseOciLayoutReference('oci-layout://./a:b/layout'), { dir: './a:b/layout' });
  assert.throws(() => parseOciLayoutReference('oci-layout://'), (e: unknown) => e instanceof StrataError && e.code === 'INVALID_REFERENCE');
  assert.throws(() => parseOciLayoutReference('oci-layout:///x@sha256:12'), /64/);
});
