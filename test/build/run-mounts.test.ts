// RUN --mount and --network end to end: bind (context and stage), cache (kept across builds),
// tmpfs, secret (readable in the step, absent from every layer), and network modes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, busyboxArgs, expectOk, extractLayers, layerEntries, readLayout } from './harness.js';
import { BaseImageUnavailable, debianLayout } from '../helpers/base-images.js';

test('bind, cache, tmpfs and secret mounts; --network=none', async (t) => {
  const env = new StrataEnv('strata-e2e-mounts-');
  t.after(() => env.cleanup());
  const secretValue = `s3cr3t-${process.pid}-value`;
  const secretFile = join(env.root, 'token.txt');
  writeFileSync(secretFile, secretValue);
  const ctx = env.context('ctx', {
    'data/c.txt': 'from the context\n',
    Dockerfile: `FROM busybox AS producer
RUN mkdir /prod && echo "produced in a stage" > /prod/p.txt

FROM busybox
RUN --mount=type=bind,source=data,target=/mnt/ctx mkdir /o && cat /mnt/ctx/c.txt > /o/bind \\
 && if { echo x > /mnt/ctx/new; } 2>/o/bind-write-error; then echo writable > /o/bind-write; else echo read-only > /o/bind-write; fi
RUN --mount=type=bind,source=data,target=/mnt/rw,rw echo scratch > /mnt/rw/new && cat /mnt/rw/new > /o/bind-rw
RUN --mount=type=bind,from=producer,source=/prod,target=/mnt/st cat /mnt/st/p.txt > /o/bind-stage
ARG BUILD_NO
RUN --mount=type=cache,target=/cache,id=e2e-cache ls /cache > /o/cache-before; echo "written by build $BUILD_NO" > /cache/build-$BUILD_NO
RUN --mount=type=tmpfs,target=/scratch grep ' /scratch ' /proc/mounts | cut -d' ' -f3 > /o/tmpfs && echo gone > /scratch/f
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /tmp/copy-of-secret && wc -c < /run/secrets/tok | tr -d ' ' > /o/secret-len \\
 && stat -c '%a %u' /run/secrets/tok > /o/secret-stat && rm /tmp/copy-of-secret
RUN --mount=type=secret,id=tok,target=/custom/place,mode=0444 test -r /custom/place && echo ok > /o/secret-target
RUN --network=none ls /sys/class/net > /o/net-none
RUN ls /sys/class/net > /o/net-default
`,
  });
  const bb = await busyboxArgs();
  const out1 = join(env.root, 'out1');
  const oci1 = join(env.root, 'oci1');
  expectOk(
    await env.build(ctx, [...bb, '--secret', `id=tok,src=${secretFile}`, '--build-arg', 'BUILD_NO=1', '-o', `type=local,dest=${out1}`, '-o', `type=oci,dest=${oci1},tar=false`]),
    'first build',
  );
  const read = (dir: string, p: string) => readFileSync(join(dir, p), 'utf8');

  // bind from the context: readable, read-only by default; rw gives a throwaway copy.
  assert.equal(read(out1, 'o/bind'), 'from the context\n');
  assert.equal(read(out1, 'o/bind-write'), 'read-only\n');
  assert.match(read(out1, 'o/bind-write-error'), /Read-only file system/);
  assert.equal(read(out1, 'o/bind-rw'), 'scratch\n');
  assert.ok(!existsSync(join(ctx, 'data/new')), 'a rw bind never writes into the context');
  // bind from another stage.
  assert.equal(read(out1, 'o/bind-stage'), 'produced in a stage\n');
  // cache: empty the first time.
  assert.equal(read(out1, 'o/cache-before'), '');
  // tmpfs: a tmpfs at the target, and nothing it held reaches the image.
  assert.equal(read(out1, 'o/tmpfs'), 'tmpfs\n');
  // Mount targets leave nothing behind in the image.
  for (const p of ['scratch', 'cache', 'mnt', 'run/secrets', 'custom']) assert.ok(!existsSync(join(out1, p)), `${p} must not be in the image`);
  // secret: readable at /run/secrets/ID (mode 0400 root), or at a chosen target.
  assert.equal(read(out1, 'o/secret-len'), `${secretValue.length}\n`);
  assert.equal(read(out1, 'o/secret-stat'), '400 0\n');
  assert.equal(read(out1, 'o/secret-target'), 'ok\n');
  // ... and not in any layer: no entry for it, and its value in no file.
  const img = readLayout(oci1);
  const entries = (await layerEntries(img)).flat();
  assert.ok(!entries.some((e) => /run\/secrets|custom\/place|copy-of-secret/.test(e)), entries.filter((e) => /run|custom/.test(e)).join('\n'));
  const unpacked = join(env.root, 'layers');
  await extractLayers(img, unpacked);
  const grep = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name);
    if (d.isDirectory()) return grep(p);
    return d.isFile() && readFileSync(p).includes(secretValue) ? [p] : [];
  });
  assert.deepEqual(grep(unpacked), []);
  // network: none has only lo; the default is the host's network.
  assert.equal(read(out1, 'o/net-none'), 'lo\n');
  const hostNet = readdirSync('/sys/class/net').sort();
  assert.deepEqual(read(out1, 'o/net-default').trim().split('\n').sort(), hostNet);

  // A second build with --no-cache sees what the first wrote into the cache mount.
  const out2 = join(env.root, 'out2');
  expectOk(await env.build(ctx, [...bb, '--no-cache', '--secret', `id=tok,src=${secretFile}`, '--build-arg', 'BUILD_NO=2', '-o', `type=local,dest=${out2}`]), 'second build');
  assert.equal(read(out2, 'o/cache-before'), 'build-1\n');
});

test('a secret that is required but not given fails the step', async (t) => {
  const env = new StrataEnv('strata-e2e-secret-req-');
  t.after(() => env.cleanup());
  const ctx = env.context('ctx', { Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=missing,required=true cat /run/secrets/missing\n' });
  const r = await env.build(ctx, [...(await busyboxArgs())]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Dockerfile:2: .*secret "missing" is required/);
});

test('Debian: apt-get install in a RUN with the apt cache on a cache mount', async (t) => {
  let layout: string;
  try {
    layout = await debianLayout();
  } catch (e) {
    if (e instanceof BaseImageUnavailable) return t.skip(e.message);
    throw e;
  }
  const env = new StrataEnv('strata-e2e-apt-');
  t.after(() => env.cleanup());
  const ctx = env.context('ctx', {
    Dockerfile: `FROM debian
RUN --mount=type=cache,target=/var/cache/apt/archives,id=apt-archives,sharing=locked \\
    --mount=type=cache,target=/var/lib/apt/lists,id=apt-lists,sharing=locked \\
    rm -f /etc/apt/apt.conf.d/docker-clean \\
 && apt-get update -qq && apt-get install -y -qq --no-install-recommends hello >/dev/null \\
 && ls /var/cache/apt/archives | grep -c '^hello_.*\\.deb$' > /hello-debs
RUN hello > /greeting
`,
  });
  const out = join(env.root, 'out');
  const r = await env.build(ctx, ['--build-context', `debian=oci-layout://${layout}:bookworm`, '-o', `type=local,dest=${out}`]);
  if (r.code !== 0 && /Temporary failure resolving|Could not resolve|Unable to connect|Failed to fetch/.test(r.stderr)) {
    return t.skip('the Debian mirror is unreachable from here');
  }
  expectOk(r, 'apt build');
  assert.equal(readFileSync(join(out, 'greeting'), 'utf8'), 'Hello, world!\n');
  assert.equal(readFileSync(join(out, 'hello-debs'), 'utf8'), '1\n');
  // The .deb stayed in the cache mount, not in the image.
  assert.deepEqual(readdirSync(join(out, 'var/cache/apt/archives')).filter((f) => f.endsWith('.deb')), []);
});
