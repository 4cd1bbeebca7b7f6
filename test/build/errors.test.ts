// Failing builds: a non-zero exit, a message naming Dockerfile:LINE, and a store that still works for
// the next (good) build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, busyboxArgs, expectOk, printedDigest, readLayout, type RunResult } from './harness.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { pushBusybox } from '../helpers/base-images.js';
import { writeImageLayout, writeLayer } from '../helpers/layers.js';

let reg: TestRegistry;
before(async () => {
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
});

function failed(r: RunResult, what: string): string {
  assert.notEqual(r.code, 0, `${what} should fail:\n${r.stdout}\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error/, `${what}: a user error, not a crash:\n${r.stderr}`);
  return r.stderr;
}

/** The store of `env` still builds: a small good build after the failure. */
async function storeStillWorks(env: StrataEnv, from: string, extra: string[] = []): Promise<void> {
  const ctx = env.context(`good-${Math.random().toString(16).slice(2)}`, { Dockerfile: `FROM ${from}\nRUN echo fine > /fine.txt\n` });
  const out = join(env.root, `good-out-${Math.random().toString(16).slice(2)}`);
  expectOk(await env.build(ctx, [...extra, '-o', `type=local,dest=${out}`]), 'the good build after a failure');
  assert.equal(readFileSync(join(out, 'fine.txt'), 'utf8'), 'fine\n');
}

test('a failing RUN reports its exit code, line and last output', async (t) => {
  const env = new StrataEnv('strata-e2e-err-run-');
  t.after(() => env.cleanup());
  const bb = await busyboxArgs();
  const ctx = env.context('ctx', {
    Dockerfile: 'FROM busybox\nRUN echo prepared > /p\nRUN echo "first line" && echo "second line" >&2 && exit 3\nRUN echo never\n',
  });
  const err = failed(await env.build(ctx, bb), 'exit 3');
  assert.match(err, /error: Dockerfile:3: .*exit code: 3/);
  assert.match(err, /first line/);
  assert.match(err, /last output lines:\n\s+first line\n\s+second line/);
  assert.doesNotMatch(err, /RUN echo never/);
  await storeStillWorks(env, 'busybox', bb);
});

test('COPY of a path outside the context fails naming the line', async (t) => {
  const env = new StrataEnv('strata-e2e-err-copy-');
  t.after(() => env.cleanup());
  const bb = await busyboxArgs();
  writeFileSync(join(env.root, 'outside.txt'), 'not in the context\n');
  const ctx = env.context('ctx', { Dockerfile: 'FROM busybox\n\nCOPY ../outside.txt /x\n' });
  const err = failed(await env.build(ctx, bb), 'COPY ../x');
  assert.match(err, /error: Dockerfile:3: .*outside the build context/);
  await storeStillWorks(env, 'busybox', bb);
});

test('a base image missing from the registry fails naming the FROM line', async (t) => {
  const env = new StrataEnv('strata-e2e-err-missing-');
  t.after(() => env.cleanup());
  const { ref } = await pushBusybox(reg.host);
  const ctx = env.context('ctx', { Dockerfile: `FROM ${ref} AS ok\nRUN true\nFROM ${reg.host}/no-such-image:1\nCOPY --from=ok /bin/busybox /bb\n` });
  const err = failed(await env.build(ctx), 'missing base');
  assert.match(err, new RegExp(`error: Dockerfile:3: .*${reg.host.replace(/\./g, '\\.')}/no-such-image:1.*not found`));
  await storeStillWorks(env, ref);
});

test('a base image whose layer escapes its root is refused (UNSAFE_LAYER)', async (t) => {
  const env = new StrataEnv('strata-e2e-err-evil-');
  t.after(() => env.cleanup());
  const blobs = join(env.root, 'blobs');
  const layer = await writeLayer(blobs, [
    { name: 'etc/', type: 'directory' },
    { name: 'etc/ok.txt', content: 'harmless\n' },
    { name: '../../evil-from-layer', content: 'escaped\n' },
  ]);
  const layout = join(env.root, 'evil-layout');
  await writeImageLayout(layout, blobs, { layers: [layer], tag: 'latest' });
  const ctx = env.context('ctx', { Dockerfile: 'FROM evil\nRUN true\n' });
  const err = failed(await env.build(ctx, ['--build-context', `evil=oci-layout://${layout}:latest`]), 'evil layer');
  // Base layers are unpacked when a step first needs them: the error names that step's line and the image.
  assert.match(err, /error: Dockerfile:[12]: .*"\.\.\/\.\.\/evil-from-layer" would be written outside the root filesystem/);
  assert.ok(err.includes(`oci-layout://${layout}:latest`), err);
  assert.doesNotMatch(err, /WARNING|cache type=|export the cache/);
  // Nothing escaped anywhere near the store or the layout.
  for (const dir of [env.root, join(env.root, '..'), env.store]) {
    assert.ok(!readdirSync(dir).includes('evil-from-layer'), `escaped into ${dir}`);
  }
  await storeStillWorks(env, 'busybox', await busyboxArgs());
});

test('a registry blob with the wrong bytes fails digest verification', async (t) => {
  const env = new StrataEnv('strata-e2e-err-digest-');
  t.after(() => env.cleanup());
  // Its own repository (the blob itself is shared by every repository of the registry).
  const { ref } = await pushBusybox(reg.host, 'corrupt-busybox', 'latest');
  const pulled = new StrataEnv('strata-e2e-err-digest-probe-');
  t.after(() => pulled.cleanup());
  const probeDir = join(pulled.root, 'probe');
  // Find the layer digest through a build that exports an OCI layout (the manifest names it).
  const probeCtx = pulled.context('ctx', { Dockerfile: `FROM ${ref}\n` });
  expectOk(await pulled.build(probeCtx, ['-o', `type=oci,dest=${probeDir},tar=false`]), 'probe build');
  const layerDigest = readLayout(probeDir).manifest.layers[0]!.digest;
  const data = reg.blobDataPath(layerDigest);
  const original = readFileSync(data);
  const bytes = Buffer.from(original);
  bytes.write('XXXX', 100);
  writeFileSync(data, bytes);
  t.after(() => writeFileSync(data, original));

  const ctx = env.context('ctx', { Dockerfile: `FROM ${ref}\nRUN true\n` });
  const err = failed(await env.build(ctx), 'corrupt blob');
  assert.match(err, new RegExp(`error: Dockerfile:[12]: .*corrupt-busybox.*expected digest ${layerDigest}, got sha256:[0-9a-f]{64}`));
  // A base image's bad blob is the image's fault, not a corrupt cache to retry without.
  assert.doesNotMatch(err, /WARNING|cache type=|export the cache/);
  // Nothing half-pulled was kept: once the registry serves the right bytes, the same store pulls
  // and builds (blobs are shared across repositories, so the bytes are put back in place).
  writeFileSync(data, original);
  await storeStillWorks(env, ref);
});

test('a Dockerfile syntax error names its line', async (t) => {
  const env = new StrataEnv('strata-e2e-err-syntax-');
  t.after(() => env.cleanup());
  const bb = await busyboxArgs();
  const ctx = env.context('ctx', {
    Dockerfile: 'FROM busybox\nRUN echo hi\nBOGUS instruction here\n',
    'Dockerfile.flag': 'FROM busybox\n\nCOPY --no-such-flag a b\n',
    'Dockerfile.heredoc': 'FROM busybox\nRUN <<EOF\necho never closed\n',
  });
  assert.match(failed(await env.build(ctx, bb), 'unknown instruction'), /error: Dockerfile:3: unknown instruction: BOGUS/i);
  assert.match(failed(await env.build(ctx, [...bb, '-f', join(ctx, 'Dockerfile.flag')]), 'unknown flag'), /Dockerfile\.flag:3: .*unknown flag: --no-such-flag/);
  assert.match(failed(await env.build(ctx, [...bb, '-f', join(ctx, 'Dockerfile.heredoc')]), 'open heredoc'), /Dockerfile\.heredoc:2: .*heredoc/);
  await storeStillWorks(env, 'busybox', bb);
});

test('--platform for another architecture is refused with a clear message', async (t) => {
  const env = new StrataEnv('strata-e2e-err-platform-');
  t.after(() => env.cleanup());
  const bb = await busyboxArgs();
  const ctx = env.context('ctx', { Dockerfile: 'FROM busybox\nRUN true\n' });
  const host = `linux/${process.arch === 'x64' ? 'amd64' : process.arch}`;
  const other = host === 'linux/arm64' ? 'linux/amd64' : 'linux/arm64';
  const err = failed(await env.build(ctx, [...bb, '--platform', other]), `--platform ${other}`);
  assert.ok(err.includes(`--platform ${other}: strata builds only for this machine's platform (${host})`), err);
  // The host platform itself is accepted.
  const ok = expectOk(await env.build(ctx, [...bb, '--platform', host]), `--platform ${host}`);
  printedDigest(ok);
});
