// `--build-context NAME=DIR` then `FROM NAME`: the stage starts from the folder's files (buildx
// accepts a local folder as a stage base). Its one layer is keyed by the files' content, like COPY.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, busyboxArgs, expectOk, instructionSteps, parseProgress, readLayout } from './harness.js';

test('FROM a local folder named context: its files are the stage, cached by content', async (t) => {
  const env = new StrataEnv('strata-from-folder-');
  t.after(() => env.cleanup());
  const bb = await busyboxArgs();
  const tools = env.context('tools', { 'greeting': 'hello from a folder\n', 'etc/tool.conf': 'level=3\n' });
  const ctx = env.context('ctx', {
    Dockerfile: `FROM tools AS t
ENV TOOL_LEVEL=3

FROM busybox
COPY --from=t /greeting /etc/tool.conf /opt/
RUN cat /opt/greeting /opt/tool.conf > /seen
`,
  });
  const args = [...bb, '--build-context', `tools=${tools}`];

  // The folder stage on its own, as an image: one layer, one history entry with a layer.
  const layout = join(env.root, 'layout');
  expectOk(await env.build(ctx, [...args, '--target', 't', '-o', `type=oci,dest=${layout},tar=false`]), 'build of the folder stage');
  const img = readLayout(layout);
  assert.equal(img.manifest.layers.length, 1);
  assert.equal(img.config.rootfs.diff_ids.length, 1);
  assert.equal((img.config.history ?? []).filter((h) => !h.empty_layer).length, 1, 'history matches the layers');
  assert.ok(img.config.config?.Env?.includes('TOOL_LEVEL=3'));

  const out = join(env.root, 'out');
  const r = expectOk(await env.build(ctx, [...args, '-o', `type=local,dest=${out}`]), 'build');
  assert.equal(readFileSync(join(out, 'seen'), 'utf8'), 'hello from a folder\nlevel=3\n');
  const from = instructionSteps(parseProgress(r.stderr)).find((s) => s.name.includes('FROM tools'));
  assert.ok(from, r.stderr);
  assert.match(from.name, /^\[t 1\/2\] FROM tools AS t$/);

  // Rebuild: all cached. One file of the folder changed: the FROM step names it, COPY reruns.
  const again = instructionSteps(parseProgress(expectOk(await env.build(ctx, [...args, '-o', 'type=cacheonly']), 'rebuild').stderr));
  assert.ok(again.every((s) => s.cached), again.map((s) => `${s.name} ${s.miss ?? ''}`).join('\n'));
  writeFileSync(join(tools, 'etc/tool.conf'), 'level=4\n');
  const changed = instructionSteps(parseProgress(expectOk(await env.build(ctx, [...args, '-o', `type=local,dest=${out}`]), 'build after a change').stderr));
  assert.match(changed.find((s) => s.name.includes('FROM tools'))?.miss ?? '', /tool\.conf content changed/);
  assert.equal(readFileSync(join(out, 'seen'), 'utf8'), 'hello from a folder\nlevel=4\n');
  // The second local export into the same folder replaced busybox's absolute symlinks in place.
  assert.equal(readlinkSync(join(out, 'linuxrc')), '/bin/busybox');
});
