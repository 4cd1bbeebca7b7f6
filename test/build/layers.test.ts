// What each step's layer holds: exactly what the step changed. No-op steps add no layer, mount
// points leave no stubs, deletions become whiteouts that a real runtime (podman) honours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, busyboxArgs, expectOk, layerEntries, readLayout } from './harness.js';
import { podman } from '../helpers/podman.js';

test('layers hold only what each step changed; whiteouts work in podman', async (t) => {
  const env = new StrataEnv('strata-e2e-layers-');
  const pm = podman();
  t.after(() => {
    pm.cleanup();
    env.cleanup();
  });
  const secret = join(env.root, 'secret');
  writeFileSync(secret, 'x');
  const ctx = env.context('ctx', {
    'f.txt': 'file\n',
    Dockerfile: `FROM busybox
RUN true
RUN echo x > /x
RUN rm /etc/shadow
RUN --mount=type=bind,target=/mnt/b --mount=type=cache,target=/var/cache/c --mount=type=tmpfs,target=/t \\
    --mount=type=secret,id=s,target=/etc/secret-file cat /etc/secret-file /mnt/b/f.txt > /dev/null
WORKDIR /
ENV A=1
COPY f.txt /f.txt
RUN --network=none true
CMD ["sh", "-c", "ls /etc; cat /x /f.txt"]
`,
  });
  const oci = join(env.root, 'oci');
  const dockerTar = join(env.root, 'docker.tar');
  expectOk(await env.build(ctx, [...(await busyboxArgs()), '--secret', `id=s,src=${secret}`, '-t', 'strata-e2e-layers:1', '-o', `type=oci,dest=${oci},tar=false`, '-o', `type=docker,dest=${dockerTar}`]), 'build');
  const img = readLayout(oci);
  const layers = (await layerEntries(img)).slice(1).map((l) => l.map((e) => e.replace(/\/$/, '')).sort());
  assert.deepEqual(layers, [['x'], ['etc', 'etc/.wh.shadow'], ['f.txt']]);
  // History lines up: one entry per instruction after the base, empty_layer where no layer was made.
  const own = img.config.history!.slice(1);
  assert.deepEqual(own.map((h) => h.empty_layer === true), [true, false, false, true, true, true, false, true, true]);
  assert.equal(img.config.rootfs.diff_ids.length, 4);

  if (!pm.available) return t.skip(pm.reason);
  const load = pm.run(['load', '-i', dockerTar]);
  assert.equal(load.status, 0, load.stderr);
  const name = /Loaded image(?:\(s\))?: (\S+)/.exec(load.stdout)?.[1];
  assert.ok(name, load.stdout);
  pm.track(name);
  const r = pm.run(['run', '--rm', name]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.ok(!lines.includes('shadow'), `/etc/shadow was deleted:\n${r.stdout}`);
  assert.ok(lines.includes('passwd') && lines.includes('group'));
  assert.deepEqual(lines.slice(-2), ['x', 'file']);
});
