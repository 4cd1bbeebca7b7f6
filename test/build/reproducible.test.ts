// SOURCE_DATE_EPOCH: the same inputs built twice, in two fresh stores, give the same image digest,
// and the config's times are the epoch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { StrataEnv, busyboxArgs, expectOk, printedDigest, readLayout } from './harness.js';

const EPOCH = 1700000000;
const FILES = {
  'src/a.txt': 'alpha\n',
  'src/b/c.txt': 'gamma\n',
  Dockerfile: `FROM busybox AS gen
RUN mkdir /gen && echo generated > /gen/g.txt && touch /gen/now

FROM busybox
ARG SOURCE_DATE_EPOCH
COPY src /app/src
COPY --from=gen /gen /app/gen
RUN echo "built at epoch $SOURCE_DATE_EPOCH" > /app/info && mkdir /app/made && touch /app/made/file
ENV MODE=repro
CMD ["cat", "/app/info"]
`,
};

test('SOURCE_DATE_EPOCH: two clean builds in fresh stores give the same image', async (t) => {
  const a = new StrataEnv('strata-e2e-sde-a-');
  const b = new StrataEnv('strata-e2e-sde-b-');
  t.after(() => {
    a.cleanup();
    b.cleanup();
  });
  const bb = await busyboxArgs();
  const builds: { digest: string; dir: string }[] = [];
  for (const [env, extra] of [[a, []], [b, ['--no-cache']]] as const) {
    // Separate context dirs too: file mtimes and paths differ between them.
    const ctx = env.context('ctx', FILES);
    const dir = join(env.root, 'oci');
    const r = expectOk(await env.build(ctx, [...bb, ...extra, '--build-arg', `SOURCE_DATE_EPOCH=${EPOCH}`, '-o', `type=oci,dest=${dir},tar=false`]), 'build');
    builds.push({ digest: printedDigest(r), dir });
    // Let the clock move on so that unclamped times would differ.
    await new Promise((res) => setTimeout(res, 1100));
  }
  assert.equal(builds[0]!.digest, builds[1]!.digest);
  const img = readLayout(builds[0]!.dir);
  assert.equal(img.manifestDigest, builds[0]!.digest);
  const epochIso = new Date(EPOCH * 1000).toISOString();
  assert.equal(new Date(img.config.created!).toISOString(), epochIso);
  // Every history entry strata wrote carries the epoch (the base image's own entry keeps its time).
  const own = img.config.history!.slice(1);
  assert.ok(own.length >= 6);
  for (const h of own) assert.equal(new Date(h.created!).toISOString(), epochIso, JSON.stringify(h));
  // Identical layer blobs, not just an identical config.
  const other = readLayout(builds[1]!.dir);
  assert.deepEqual(other.manifest.layers, img.manifest.layers);
});
