// A tag that moves to another image in the registry busts the first step, naming the new digest.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { RegistryClient } from '../../src/registry/client.js';
import { parseReference } from '../../src/registry/reference.js';
import { pushImage } from '../../src/image/push.js';
import { busyboxImage, pushBusybox } from '../helpers/base-images.js';
import { assembleImage, writeLayer, type BuiltLayer } from '../helpers/layers.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { cacheEnv, misses, step, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
let reg: TestRegistry;
before(async () => {
  t = await cacheEnv('base');
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
  rmSync(t.env.root, { recursive: true, force: true });
});

/** busybox plus one layer holding /etc/motd: another image to push under the same tag. */
async function pushBusyboxWithMotd(ref: string, motd: string): Promise<string> {
  const bb = await busyboxImage();
  const diffIds = (JSON.parse(bb.config.toString('utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
  const base: BuiltLayer[] = bb.layers.map((d, i) => ({ path: bb.blobs.path(d.digest), digest: d.digest, diffId: diffIds[i]!, size: d.size, descriptor: d }));
  const blobDir = join(t.env.root, 'extra-blobs');
  const extra = await writeLayer(blobDir, [
    { name: 'etc/', type: 'directory' },
    { name: 'etc/motd', content: motd },
  ]);
  const image = assembleImage(blobDir, { layers: [...base, extra], config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] } });
  const blobs = { path: (d: string) => (existsSync(join(blobDir, d.replace(/^sha256:/, ''))) ? join(blobDir, d.replace(/^sha256:/, '')) : bb.blobs.path(d)) };
  const { digest } = await pushImage(new RegistryClient(), { ...image, blobs }, [parseReference(ref)]);
  return digest;
}

test('a base tag that now points at another image misses the first step with the new digest', async () => {
  const { ref, digest: first } = await pushBusybox(reg.host, 'base', '1');
  assert.equal(ref, `${reg.host}/base:1`);
  const ctx = t.env.context('ctx', {
    Dockerfile: `FROM ${ref}
RUN cat /etc/motd 2>/dev/null > /motd-copy; echo built > /built
COPY app.txt /app.txt
`,
    'app.txt': 'app\n',
  });
  const b1 = await t.ok(ctx);
  assert.equal(step(b1.instructions, 'RUN cat').miss, 'no previous build');
  const b2 = await t.ok(ctx);
  assert.equal(misses(b2.instructions), '');

  const second = await pushBusyboxWithMotd(ref, 'new base\n');
  assert.notEqual(second, first);
  const b3 = await t.ok(ctx);
  assert.equal(step(b3.instructions, 'RUN cat').miss, `base image ${ref} now ${second}`);
  assert.match(step(b3.instructions, 'COPY app.txt').miss ?? '', /^parent step \[stage-0 2\/3\] RUN cat .* changed$/);
  const ex = await t.explain();
  assert.equal(step(ex.steps, 'RUN cat').reason, `base image ${ref} now ${second}`);
  assert.equal(step(ex.steps, 'RUN cat').cached, false);

  const b4 = await t.ok(ctx);
  assert.equal(misses(b4.instructions), '', 'the new base is cached from now on');

  // Back to the first image: its records are still in the store, so everything hits.
  await pushBusybox(reg.host, 'base', '1');
  const b5 = await t.ok(ctx);
  assert.equal(misses(b5.instructions), '');
});
