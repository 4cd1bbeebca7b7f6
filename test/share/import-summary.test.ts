// `strata cache import` reports the cache mounts it seeded once the seeds have finished: a mount
// tarball that matches its digest but does not unpack is named in a warning and left out of the
// summary (the seeds run in the background, so a summary printed at once would claim it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { machines, busyboxContext, compilerDockerfile, expectOk, sources } from './support.js';

const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** Puts `bytes` in place of cache mount `id`'s tarball and rewrites the cache's config, manifest and index to match. */
function replaceMountBlob(dir: string, id: string, bytes: Buffer): void {
  const blob = (d: string) => join(dir, 'blobs', 'sha256', d.slice('sha256:'.length));
  const write = (data: Buffer) => {
    const d = sha(data);
    writeFileSync(blob(d), data);
    return d;
  };
  const indexPath = join(dir, 'index.json');
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { manifests: { digest: string; size: number }[] };
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as {
    config: { digest: string; size: number };
    layers: { digest: string; size: number; annotations?: Record<string, string> }[];
  };
  const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as { mounts: { id: string; digest: string; size: number }[] };
  const mount = config.mounts.find((m) => m.id === id);
  assert.ok(mount, `no cache mount ${id} in the export`);
  mount.digest = write(bytes);
  mount.size = bytes.length;
  const configBytes = Buffer.from(JSON.stringify(config));
  manifest.config = { ...manifest.config, digest: write(configBytes), size: configBytes.length };
  const layer = manifest.layers.find((l) => l.annotations?.['dev.strata.cache.mount'] === id)!;
  layer.digest = mount.digest;
  layer.size = bytes.length;
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  index.manifests[0] = { ...index.manifests[0]!, digest: write(manifestBytes), size: manifestBytes.length };
  writeFileSync(indexPath, JSON.stringify(index));
}

test('cache import: a mount tarball that verifies but does not unpack is warned about and not reported as seeded', async (t) => {
  const [a, b] = machines(t, 'a', 'b');
  const bb = await busyboxContext();
  const files = { Dockerfile: compilerDockerfile('busybox'), ...sources(3) };
  const dir = join(a.root, 'cache');
  await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=local,dest=${dir},mode=max,mounts=all`]);
  // Valid gzip, right digest, but no tar inside.
  replaceMountBlob(dir, 'cc', gzipSync(randomBytes(4096)));

  const r = expectOk(await b.strata(['cache', 'import', `type=local,src=${dir}`]), 'cache import');
  assert.match(r.stdout, /imported \d+ new records .*cache mounts seeded: none$/m);
  assert.match(r.stderr, /cache mount cc not seeded: .*cannot unpack/);
  assert.notEqual((await b.strata(['mount', 'path', 'cc'])).code, 0, 'no mount cc in B');
});
