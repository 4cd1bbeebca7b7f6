// The registry client against a real docker-registry on loopback: push, pull by tag and digest,
// index resolution, blob verification, cross-repo mounts and error messages.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { StrataError } from '../../src/errors.js';
import { RegistryClient } from '../../src/registry/client.js';
import { MediaTypes } from '../../src/registry/media-types.js';
import { parseReference, type ImageReference } from '../../src/registry/reference.js';
import { buildIndex, platformOf } from '../../src/image/builders.js';
import { pushImage } from '../../src/image/push.js';
import { parseManifest } from '../../src/image/types.js';
import { busyboxImage } from '../helpers/base-images.js';
import { assembleImage, writeLayer } from '../helpers/layers.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';

let reg: TestRegistry;
let work: string;
const client = new RegistryClient();

before(async () => {
  reg = await startRegistry();
  work = mkdtempSync(join(tmpdir(), 'strata-client-test-'));
});
after(async () => {
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function ref(s: string): ImageReference {
  return parseReference(`${reg.host}/${s}`);
}

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<StrataError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => {
    caught = e;
    return true;
  });
  assert.ok(caught instanceof StrataError, `expected a StrataError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (message) assert.match(caught.message, message);
  assert.ok(caught.hint, 'every error carries a hint');
  return caught;
}

test('push busybox, pull it back by tag and by digest: identical manifest, skopeo agrees', async () => {
  const image = await busyboxImage();
  const target = ref('bb/busybox:1');
  const pushed = await pushImage(client, image, [target]);
  assert.equal(pushed.digest, image.manifestDigest);

  const byTag = await client.resolve(target);
  assert.equal(byTag.digest, image.manifestDigest);
  assert.equal(byTag.mediaType, MediaTypes.ociManifest);
  assert.ok(byTag.manifest.equals(image.manifest), 'same manifest bytes');
  assert.equal(byTag.indexDigest, undefined);

  const byDigest = await client.resolve({ ...target, tag: undefined, digest: image.manifestDigest });
  assert.equal(byDigest.digest, image.manifestDigest);
  assert.ok(byDigest.manifest.equals(byTag.manifest));

  const inspect = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/bb/busybox:1`], { encoding: 'utf8' })) as { Digest: string; Layers: string[] };
  assert.equal(inspect.Digest, image.manifestDigest);
  assert.deepEqual(inspect.Layers, image.layers.map((l) => l.digest));

  assert.equal(await client.headDigest(target), image.manifestDigest);
  assert.equal(await client.headDigest(ref('bb/busybox:nope')), undefined);
  assert.equal(await client.headDigest(ref('never/pushed:latest')), undefined);
  assert.deepEqual(await client.listTags(target), ['1']);

  // Blobs come back byte-identical and verified.
  const layer = image.layers[0]!;
  const dest = join(work, 'pulled', 'layer');
  const { size } = await client.fetchBlob(target, layer.digest, dest);
  assert.equal(size, layer.size);
  assert.ok(readFileSync(dest).equals(readFileSync(image.blobs.path(layer.digest))));
  assert.deepEqual(readdirSync(join(work, 'pulled')), ['layer'], 'no temp files left');
  const config = await client.fetchBlobBytes(target, image.configDigest);
  assert.ok(config.equals(image.config));
  assert.equal(parseManifest(byTag.manifest).config.digest, image.configDigest);
});

test('pushing again skips existing blobs; a second repository mounts them', async () => {
  const image = await busyboxImage();
  const first = ref('mount/src:1');
  await pushImage(client, image, [first]);
  const layer = image.layers[0]!;
  const path = image.blobs.path(layer.digest);
  assert.equal(await client.pushBlob(first, layer.digest, layer.size, path), 'exists');
  assert.equal(await client.blobExists(ref('mount/dst:1'), layer.digest), false);
  assert.equal(await client.pushBlob(ref('mount/dst:1'), layer.digest, layer.size, path, { mountFrom: first }), 'mounted');
  assert.equal(await client.blobExists(ref('mount/dst:1'), layer.digest), true);
  const posts = (await reg.requests()).filter((r) => r.method === 'POST' && r.path.startsWith('/v2/mount/dst/blobs/uploads/'));
  assert.equal(posts.length, 1);
  assert.match(posts[0]!.path, /mount=sha256%3A[0-9a-f]{64}&from=mount%2Fsrc/);
  assert.equal(posts[0]!.status, 201);

  // pushImage to two repositories of one registry mounts instead of uploading twice.
  const before = await reg.requestCount({ method: 'PUT', pathIncludes: '/blobs/uploads/' });
  const res = await pushImage(client, image, [ref('multi/a:x'), ref('multi/a:y'), ref('multi/b:z')]);
  const after = await reg.requestCount({ method: 'PUT', pathIncludes: '/blobs/uploads/' });
  assert.equal(after - before, 2, 'config + layer uploaded once, to the first repository');
  assert.equal(res.pushed.length, 3);
  for (const r of ['multi/a:x', 'multi/a:y', 'multi/b:z']) assert.equal(await client.headDigest(ref(r)), image.manifestDigest);
});

test('pushBlob streams from a function source and the registry verifies the digest', async () => {
  const data = Buffer.from('hello from a stream\n'.repeat(1000));
  const digest = sha256(data);
  const target = ref('streams/x:1');
  assert.equal(await client.pushBlob(target, digest, data.length, () => Readable.from([data.subarray(0, 7000), data.subarray(7000)])), 'uploaded');
  assert.ok((await client.fetchBlobBytes(target, digest)).equals(data));
  // Bytes that do not match the claimed digest are refused by the registry, and we say so.
  const wrong = sha256(Buffer.from('something else'));
  await rejectsWith(client.pushBlob(target, wrong, data.length, () => Readable.from([data])), 'DIGEST_MISMATCH', /rejected the upload/);
});

test('a manifest list resolves to the requested platform', async () => {
  const blobDir = join(work, 'multi-blobs');
  const layer = await writeLayer(blobDir, [{ name: 'etc/', type: 'directory' }, { name: 'etc/arch', content: 'any\n' }]);
  const amd64 = assembleImage(blobDir, { layers: [layer], architecture: 'amd64' });
  const arm64 = assembleImage(blobDir, { layers: [layer], architecture: 'arm64', variant: 'v8' });
  const repo = ref('multi/arch:latest');
  for (const img of [amd64, arm64]) await pushImage(client, img, [{ ...repo, tag: undefined, digest: img.manifestDigest }]);
  const index = buildIndex([amd64, arm64].map((img) => ({
    mediaType: MediaTypes.ociManifest, digest: img.manifestDigest, size: img.manifest.length, platform: platformOf(img.imageConfig),
  })));
  const indexDigest = await client.putManifest(repo, 'latest', index.bytes, MediaTypes.ociIndex);
  assert.equal(indexDigest, index.digest);

  const a = await client.resolve(repo, { os: 'linux', architecture: 'amd64' });
  assert.equal(a.digest, amd64.manifestDigest);
  assert.equal(a.indexDigest, index.digest);
  assert.ok(a.manifest.equals(amd64.manifest));
  const b = await client.resolve(repo, { os: 'linux', architecture: 'arm64' });
  assert.equal(b.digest, arm64.manifestDigest, 'arm64 without a variant means v8');
  const c = await client.resolve(repo, { os: 'linux', architecture: 'aarch64', variant: 'v8' });
  assert.equal(c.digest, arm64.manifestDigest);
  const err = await rejectsWith(client.resolve(repo, { os: 'linux', architecture: 's390x' }), 'PLATFORM_NOT_FOUND', /no manifest for platform linux\/s390x/);
  assert.match(err.hint!, /linux\/amd64, linux\/arm64\/v8/);
  assert.equal(await client.headDigest(repo), index.digest, 'headDigest reports the tag\'s own (index) digest');

  // Docker's manifest list media type resolves the same way.
  const list = Buffer.from(JSON.stringify({ ...JSON.parse(index.bytes.toString()), mediaType: MediaTypes.dockerManifestList }));
  await client.putManifest(repo, 'dockerlist', list, MediaTypes.dockerManifestList);
  const d = await client.resolve({ ...repo, tag: 'dockerlist' });
  assert.equal(d.digest, amd64.manifestDigest);
  assert.equal(d.indexDigest, sha256(list));
});

test('a corrupted blob in the registry fails with DIGEST_MISMATCH and leaves no file', async () => {
  const blobDir = join(work, 'corrupt-blobs');
  const layer = await writeLayer(blobDir, [{ name: 'data.bin', content: Buffer.alloc(300_000, 7) }]);
  const img = assembleImage(blobDir, { layers: [layer] });
  const target = ref('corrupt/img:1');
  await pushImage(client, img, [target]);

  const stored = reg.blobDataPath(layer.digest);
  assert.ok(existsSync(stored), `registry storage has ${stored}`);
  const bytes = readFileSync(stored);
  bytes[bytes.length >> 1] ^= 0xff;
  writeFileSync(stored, bytes);

  const destDir = join(work, 'corrupt-dest');
  const err = await rejectsWith(client.fetchBlob(target, layer.digest, join(destDir, 'layer')), 'DIGEST_MISMATCH');
  assert.ok(err.message.includes(reg.host), 'names the registry');
  assert.ok(err.message.includes('corrupt/img'), 'names the repository');
  assert.ok(err.message.includes(`expected digest ${layer.digest}`), 'names the expected digest');
  assert.ok(err.message.includes(`got ${sha256(bytes)}`), 'names the actual digest');
  assert.deepEqual(readdirSync(destDir), [], 'neither the file nor a temp file remains');

  // openBlob errors at the end of the stream, so a consumer never sees a clean end.
  const stream = await client.openBlob(target, layer.digest);
  await assert.rejects(async () => { for await (const _ of stream) { /* drain */ } }, (e: unknown) => e instanceof StrataError && e.code === 'DIGEST_MISMATCH');

  // A corrupted manifest is caught too (by tag via Docker-Content-Digest, by digest via the reference).
  const mpath = reg.blobDataPath(img.manifestDigest);
  const m = readFileSync(mpath);
  writeFileSync(mpath, Buffer.concat([m.subarray(0, m.length - 1), Buffer.from(' }')]));
  await rejectsWith(client.resolve({ ...target, tag: undefined, digest: img.manifestDigest }), 'DIGEST_MISMATCH', /manifest from registry/);
  await rejectsWith(client.resolve(target), 'DIGEST_MISMATCH');
});

test('missing images and unreachable registries give clear errors', async () => {
  const missing = parseReference(`${reg.host}/nope:latest`);
  const e = await rejectsWith(client.resolve(missing), 'IMAGE_NOT_FOUND');
  assert.equal(e.message, `image ${reg.host}/nope:latest not found in registry`);
  await rejectsWith(client.resolve(ref('bb/busybox:missing-tag')), 'IMAGE_NOT_FOUND', /bb\/busybox:missing-tag not found/);
  await rejectsWith(client.fetchBlob(ref('bb/busybox:1'), 'sha256:' + '0'.repeat(64), join(work, 'x')), 'BLOB_NOT_FOUND');
  await rejectsWith(client.fetchBlob(ref('bb/busybox:1'), 'sha256:abc', join(work, 'y')), 'INVALID_DIGEST');

  // A loopback port nobody listens on (briefly bound, then released).
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const dead = parseReference(`127.0.0.1:${port}/x:latest`);
  const u = await rejectsWith(client.resolve(dead), 'REGISTRY_UNREACHABLE', new RegExp(`cannot reach registry 127\\.0\\.0\\.1:${port} at http://127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED`));
  assert.match(u.hint!, /running and reachable/);
});

test('a non-loopback registry is spoken to over HTTPS unless marked insecure', async () => {
  // 127.0.0.1 is always plain HTTP; the same registry under a non-loopback alias is not.
  const port = reg.host.split(':')[1];
  const alias = parseReference(`strata-test.localtest:${port}/bb/busybox:1`);
  assert.equal(client.isPlainHttp(alias.registry), false);
  const insecure = new RegistryClient({ insecureRegistries: [alias.registry] });
  assert.equal(insecure.isPlainHttp(alias.registry), true);
});
