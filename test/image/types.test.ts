// Image config/manifest readers and builders: Docker schema 2 read as OCI, canonical config bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { StrataError } from '../../src/errors.js';
import { buildConfigBlob, buildIndex, buildManifest } from '../../src/image/builders.js';
import { canonicalJson } from '../../src/image/canonical-json.js';
import {
  MediaTypes, declaredMediaType, layerCompression, parseImageConfig, parseIndex, parseManifest, type ImageConfig,
} from '../../src/image/types.js';

const H = (c: string): string => `sha256:${c.repeat(64)}`;

test('a Docker config (nulls, extras, legacy fields) reads as the OCI shape', () => {
  const docker = {
    architecture: 'amd64', os: 'linux', created: '2023-05-01T10:00:00.123Z', docker_version: '20.10.23',
    container: 'abc', container_config: { Hostname: 'abc', Cmd: ['/bin/sh', '-c', '#(nop) CMD ["sh"]'] },
    config: {
      Hostname: '', Domainname: '', User: '', AttachStdin: false, Tty: false, Env: ['PATH=/bin', 'A=1'],
      Cmd: ['sh'], Image: 'sha256:00', Volumes: { '/data': {} }, WorkingDir: '/app', Entrypoint: null,
      OnBuild: null, Labels: { 'org.x': 'y' }, ExposedPorts: { '80/tcp': {} }, StopSignal: 'SIGQUIT',
      Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 30_000_000_000, Retries: 3, Timeout: 0 },
      Shell: ['/bin/bash', '-c'], ArgsEscaped: true,
    },
    rootfs: { type: 'layers', diff_ids: [H('a'), H('b')] },
    history: [{ created: '2023-05-01T10:00:00Z', created_by: '/bin/sh -c #(nop) ADD file:x in /' }, { created_by: 'CMD ["sh"]', empty_layer: true }],
  };
  const c = parseImageConfig(Buffer.from(JSON.stringify(docker)));
  assert.deepEqual(c, {
    architecture: 'amd64', os: 'linux', created: '2023-05-01T10:00:00.123Z',
    rootfs: { type: 'layers', diff_ids: [H('a'), H('b')] },
    config: {
      Env: ['PATH=/bin', 'A=1'], Cmd: ['sh'], Volumes: { '/data': {} }, WorkingDir: '/app', Labels: { 'org.x': 'y' },
      ExposedPorts: { '80/tcp': {} }, StopSignal: 'SIGQUIT', Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 30_000_000_000, Retries: 3 },
      Shell: ['/bin/bash', '-c'], ArgsEscaped: true,
    },
    history: [{ created: '2023-05-01T10:00:00Z', created_by: '/bin/sh -c #(nop) ADD file:x in /' }, { created_by: 'CMD ["sh"]', empty_layer: true }],
  });
});

test('invalid configs are StrataErrors that say what is wrong', () => {
  assert.throws(() => parseImageConfig('not json'), (e: unknown) => e instanceof StrataError && e.code === 'INVALID_IMAGE' && /not valid JSON/.test(e.message));
  assert.throws(() => parseImageConfig('{"os":"linux"}'), /rootfs is missing/);
  assert.throws(() => parseImageConfig('{"rootfs":{"diff_ids":[]},"config":{"Env":"A=1"}}'), /config\.Env must be an array of strings/);
});

test('canonical config bytes do not depend on key order', () => {
  const a: ImageConfig = {
    architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [H('c')] },
    config: { Labels: { b: '2', a: '1' }, Env: ['Z=1', 'A=2'], Cmd: ['sh'] },
  };
  const b: ImageConfig = {
    config: { Cmd: ['sh'], Env: ['Z=1', 'A=2'], Labels: { a: '1', b: '2' } },
    rootfs: { diff_ids: [H('c')], type: 'layers' }, os: 'linux', architecture: 'amd64',
  };
  const ba = buildConfigBlob(a);
  const bb = buildConfigBlob(b);
  assert.ok(ba.bytes.equals(bb.bytes));
  assert.equal(ba.digest, `sha256:${createHash('sha256').update(ba.bytes).digest('hex')}`);
  assert.equal(ba.bytes.toString(), '{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["Z=1","A=2"],"Labels":{"a":"1","b":"2"}},"os":"linux","rootfs":{"diff_ids":["' + H('c') + '"],"type":"layers"}}');
  assert.equal(ba.descriptor.mediaType, MediaTypes.ociConfig);
  assert.equal(ba.size, ba.bytes.length);
  assert.deepEqual(parseImageConfig(ba.bytes), a, 'round trip');
  assert.equal(canonicalJson({ b: undefined, a: [1, undefined] }), '{"a":[1,null]}');
});

test('buildManifest / buildIndex produce OCI JSON whose digest is of the exact bytes', () => {
  const cfg = buildConfigBlob({ architecture: 'arm64', os: 'linux', variant: 'v8', rootfs: { type: 'layers', diff_ids: [] } });
  const layers = [{ mediaType: MediaTypes.ociLayerGzip, digest: H('d'), size: 10 }];
  const m = buildManifest(cfg.descriptor, layers, { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' });
  assert.equal(m.mediaType, MediaTypes.ociManifest);
  assert.equal(m.digest, `sha256:${createHash('sha256').update(m.bytes).digest('hex')}`);
  const parsed = JSON.parse(m.bytes.toString());
  assert.deepEqual(Object.keys(parsed), ['schemaVersion', 'mediaType', 'config', 'layers', 'annotations']);
  assert.equal(parsed.config.digest, cfg.digest);
  assert.deepEqual(parsed.layers, layers);
  assert.deepEqual(buildManifest(cfg.descriptor, layers, { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' }).bytes, m.bytes, 'stable');

  const idx = buildIndex([{ mediaType: MediaTypes.ociManifest, digest: m.digest, size: m.size, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } }]);
  const pi = parseIndex(idx.bytes);
  assert.equal(pi.manifests[0]!.platform?.variant, 'v8');
  assert.equal(declaredMediaType(idx.bytes), MediaTypes.ociIndex);
});

test('Docker schema 2 manifests and lists read with OCI media types', () => {
  const docker = {
    schemaVersion: 2, mediaType: MediaTypes.dockerManifest,
    config: { mediaType: MediaTypes.dockerConfig, digest: H('1'), size: 100 },
    layers: [
      { mediaType: MediaTypes.dockerLayerGzip, digest: H('2'), size: 200 },
      { mediaType: MediaTypes.dockerForeignLayerGzip, digest: H('3'), size: 300, urls: ['https://x/y'] },
    ],
  };
  const m = parseManifest(JSON.stringify(docker));
  assert.equal(m.mediaType, MediaTypes.ociManifest);
  assert.equal(m.config.mediaType, MediaTypes.ociConfig);
  assert.deepEqual(m.layers.map((l) => l.mediaType), [MediaTypes.ociLayerGzip, MediaTypes.ociLayerNondistributableGzip]);
  assert.deepEqual(m.layers[1]!.urls, ['https://x/y']);
  assert.equal(declaredMediaType(JSON.stringify(docker)), MediaTypes.dockerManifest);

  const list = { schemaVersion: 2, mediaType: MediaTypes.dockerManifestList, manifests: [{ mediaType: MediaTypes.dockerManifest, digest: H('4'), size: 5, platform: { architecture: 'amd64', os: 'linux' } }] };
  const i = parseIndex(JSON.stringify(list));
  assert.equal(i.manifests[0]!.mediaType, MediaTypes.ociManifest);

  assert.throws(() => parseManifest(JSON.stringify({ schemaVersion: 1, name: 'x' })), (e: unknown) => e instanceof StrataError && e.code === 'UNSUPPORTED_MANIFEST');
  assert.throws(() => parseManifest(JSON.stringify(list)), /no layers array/);
});

test('layer compression is read from the media type', () => {
  assert.equal(layerCompression(MediaTypes.ociLayerGzip), 'gzip');
  assert.equal(layerCompression(MediaTypes.dockerLayerGzip), 'gzip');
  assert.equal(layerCompression(MediaTypes.ociLayerZstd), 'zstd');
  assert.equal(layerCompression(MediaTypes.ociLayer), 'none');
});
