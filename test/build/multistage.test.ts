// Multi-stage builds end to end: only the stages the target needs run, and the image goes out as an
// OCI layout (read by umoci and skopeo) and a docker archive (loaded and run by podman).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { StrataEnv, busyboxArgs, expectOk, instructionSteps, parseProgress, printedDigest, readLayout, run } from './harness.js';
import { podman } from '../helpers/podman.js';

const DOCKERFILE = `FROM busybox AS unused
RUN echo unused-stage-ran && exit 1

FROM busybox AS gen
RUN mkdir /out && echo "made in gen" > /out/gen.txt

FROM busybox AS files
COPY part.txt /files/part.txt

FROM busybox
COPY --from=gen /out/gen.txt /app/gen.txt
COPY --from=files /files/part.txt /app/part.txt
CMD ["sh", "-c", "cat /app/gen.txt /app/part.txt"]
`;

test('multi-stage build: unused stage never runs; OCI layout and docker archive outputs work', async (t) => {
  const env = new StrataEnv('strata-e2e-multi-');
  const pm = podman();
  t.after(() => {
    pm.cleanup();
    env.cleanup();
  });
  const ctx = env.context('ctx', { Dockerfile: DOCKERFILE, 'part.txt': 'copied from the context\n' });
  const ociDir = join(env.root, 'oci');
  const dockerTar = join(env.root, 'image-docker.tar');
  const r = expectOk(
    await env.build(ctx, [...(await busyboxArgs()), '-t', 'strata-e2e-multi:1', '-o', `type=oci,dest=${ociDir},tar=false`, '-o', `type=docker,dest=${dockerTar}`]),
    'multi-stage build',
  );
  const digest = printedDigest(r);

  // The unused stage is pruned: neither its RUN nor its output appears.
  assert.doesNotMatch(r.stderr, /unused-stage-ran/);
  const steps = instructionSteps(parseProgress(r.stderr));
  assert.ok(!steps.some((s) => s.name.startsWith('[unused')), `unused stage in progress:\n${r.stderr}`);
  // Both independent stages ran, and every step finished.
  for (const want of ['[gen 2/2] RUN mkdir /out', '[files 2/2] COPY part.txt', 'COPY --from=gen', 'COPY --from=files']) {
    assert.ok(steps.some((s) => s.name.includes(want) && s.done), `no finished step "${want}" in:\n${r.stderr}`);
  }

  // OCI layout: umoci and skopeo read it, and it names the printed digest.
  const umoci = expectOk(await run('umoci', ['ls', '--layout', ociDir]), 'umoci ls');
  assert.deepEqual(umoci.stdout.trim().split('\n'), ['1']);
  const inspect = JSON.parse(expectOk(await run('skopeo', ['inspect', `oci:${ociDir}:1`]), 'skopeo inspect').stdout) as { Digest: string; Layers: string[] };
  assert.equal(inspect.Digest, digest);
  const img = readLayout(ociDir, '1');
  assert.equal(img.manifestDigest, digest);
  assert.deepEqual(img.config.config?.Cmd, ['sh', '-c', 'cat /app/gen.txt /app/part.txt']);
  // busybox's layer plus one per COPY.
  assert.equal(inspect.Layers.length, 3);
  assert.equal(img.config.rootfs.diff_ids.length, 3);

  // docker archive: podman loads it and the container prints what the stages produced.
  if (!pm.available) return t.skip(pm.reason);
  const load = pm.run(['load', '-i', dockerTar]);
  assert.equal(load.status, 0, load.stderr);
  const loaded = /Loaded image(?:\(s\))?: (\S+)/.exec(load.stdout)?.[1];
  assert.ok(loaded, `podman load printed no image name: ${load.stdout}`);
  pm.track(loaded);
  const out = pm.run(['run', '--rm', loaded]);
  assert.equal(out.status, 0, out.stderr);
  assert.equal(out.stdout, 'made in gen\ncopied from the context\n');
});
