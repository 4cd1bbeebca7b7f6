// Images through a real registry (docker-registry on loopback) and through `strata save`/`load`:
// push, inspect with skopeo, build FROM the pushed digest in a fresh store, and build FROM an image
// that was loaded from a tar with the registry gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, expectOk, instructionSteps, parseProgress, printedDigest, run } from './harness.js';
import { startRegistry } from '../helpers/registry.js';
import { pushBusybox } from '../helpers/base-images.js';

test('push to a registry, pull by digest in a fresh store, save/load round trip without the registry', async (t) => {
  const reg = await startRegistry();
  const envs: StrataEnv[] = [];
  const newEnv = (name: string) => {
    const e = new StrataEnv(`strata-e2e-${name}-`);
    envs.push(e);
    return e;
  };
  t.after(async () => {
    await reg.stop();
    for (const e of envs) e.cleanup();
  });
  const base = await pushBusybox(reg.host);

  // 1. Build FROM the registry's busybox and push the result.
  const builder = newEnv('push');
  const ctx = builder.context('app', {
    Dockerfile: `FROM ${base.ref}\nRUN echo "app payload" > /app.txt\nCMD ["cat", "/app.txt"]\n`,
  });
  const appRef = `${reg.host}/app:1`;
  const pushed = expectOk(await builder.build(ctx, ['-t', appRef, '--push']), 'build --push');
  const digest = printedDigest(pushed);
  const inspect = JSON.parse(expectOk(await run('skopeo', ['inspect', '--tls-verify=false', `docker://${appRef}`]), 'skopeo inspect').stdout) as { Digest: string; Layers: string[] };
  assert.equal(inspect.Digest, digest);
  assert.equal(inspect.Layers.length, 2);
  // The registry holds exactly the manifest strata described: its bytes hash to the digest.
  const raw = expectOk(await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${appRef}`]), 'skopeo inspect --raw').stdout;
  const { createHash } = await import('node:crypto');
  assert.equal(`sha256:${createHash('sha256').update(raw).digest('hex')}`, digest);

  // -o type=registry with an explicit name pushes the same image under another tag.
  // (A new config `created` time makes it a new digest; its layers are the same.)
  const again = expectOk(await builder.build(ctx, ['-o', `type=registry,name=${reg.host}/app:2`]), 'build -o type=registry');
  const inspect2 = JSON.parse(expectOk(await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/app:2`]), 'skopeo inspect app:2').stdout) as { Digest: string; Layers: string[] };
  assert.equal(inspect2.Digest, printedDigest(again));
  assert.deepEqual(inspect2.Layers, inspect.Layers);

  // 2. A fresh store builds FROM the pushed image by digest: layers come from the registry.
  const puller = newEnv('pull');
  const ctx2 = puller.context('child', { Dockerfile: `FROM ${appRef}@${digest}\nRUN cat /app.txt > /seen.txt\n` });
  const out2 = join(puller.root, 'out');
  const child = expectOk(await puller.build(ctx2, ['-o', `type=local,dest=${out2}`]), 'build FROM pushed digest');
  assert.equal(readFileSync(join(out2, 'seen.txt'), 'utf8'), 'app payload\n');
  assert.ok(instructionSteps(parseProgress(child.stderr)).every((s) => !s.cached), 'a fresh store has nothing cached');
  const blobGets = (await reg.requests()).filter((r) => r.method === 'GET' && r.path.includes('/v2/app/blobs/'));
  assert.ok(blobGets.length >= 2, `expected the app's blobs to be fetched, saw ${JSON.stringify(blobGets)}`);

  // 3. save from the pushing store, load into a fresh one, and build FROM it with the registry stopped.
  const tarFile = join(builder.root, 'app.tar');
  expectOk(await builder.strata(['save', appRef, '-o', tarFile]), 'strata save');
  const loader = newEnv('load');
  const loaded = expectOk(await loader.strata(['load', '-i', tarFile]), 'strata load');
  assert.match(loaded.stdout, new RegExp(`${appRef.replace(/[.]/g, '\\.')} \\(${digest}\\)`));
  const images = expectOk(await loader.strata(['images', '--format', 'json']), 'strata images');
  assert.ok((JSON.parse(images.stdout) as { name: string; digest: string }[]).some((i) => i.name === appRef && i.digest === digest), images.stdout);
  await reg.stop();
  const ctx3 = loader.context('child', { Dockerfile: `FROM ${appRef}\nRUN cat /app.txt > /seen.txt\n` });
  const out3 = join(loader.root, 'out');
  expectOk(await loader.build(ctx3, ['-o', `type=local,dest=${out3}`]), 'build FROM loaded image, registry stopped');
  assert.equal(readFileSync(join(out3, 'seen.txt'), 'utf8'), 'app payload\n');
});
