// A COPY from the context rerun after a one-file change hard-links the unchanged files from its
// previous layer (src/fileops/link-reuse.ts): same layers as a clean build of the same context.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, expectOk, readLayout } from './harness.js';

const FILES: Record<string, string> = { Dockerfile: 'FROM scratch\nCOPY src /src\nCOPY extra.txt /extra.txt\n', 'extra.txt': 'extra\n' };
for (let d = 0; d < 4; d++) for (let f = 0; f < 30; f++) FILES[`src/d${d}/f${f}.txt`] = `dir ${d} file ${f}\n`.repeat(1 + f);

function diffIds(env: StrataEnv, ctx: string, name: string): Promise<string[]> {
  const dir = join(env.root, name);
  return env.build(ctx, ['-o', `type=oci,dest=${dir},tar=false`]).then((r) => {
    expectOk(r, `build ${name}`);
    return readLayout(dir).config.rootfs.diff_ids;
  });
}

function layerFile(env: StrataEnv, diffId: string, rel: string) {
  return lstatSync(join(env.store, 'layers', diffId.split(':')[1]!, rel));
}

test('a COPY rerun after a one-file change links unchanged files from its last layer and makes the layer a clean build makes', async (t) => {
  const a = new StrataEnv('strata-e2e-linkreuse-a-');
  const b = new StrataEnv('strata-e2e-linkreuse-b-');
  const c = new StrataEnv('strata-e2e-linkreuse-c-');
  t.after(() => {
    a.cleanup();
    b.cleanup();
    c.cleanup();
  });
  const ctx = a.context('ctx', FILES);
  let i = 0;
  for (const p of Object.keys(FILES)) {
    const t0 = 1_650_000_000.987654321 + i++;
    utimesSync(join(ctx, p), t0, t0);
  }

  const first = await diffIds(a, ctx, 'oci1');
  writeFileSync(join(ctx, 'src/d2/f7.txt'), 'changed\n');
  const second = await diffIds(a, ctx, 'oci2');
  assert.notEqual(second[0], first[0]);
  assert.equal(second[1], first[1]);
  // unchanged files share the previous layer's inodes, the changed one does not
  const same = layerFile(a, second[0]!, 'src/d1/f3.txt');
  assert.equal(same.ino, layerFile(a, first[0]!, 'src/d1/f3.txt').ino);
  assert.ok(same.nlink >= 2);
  assert.equal(layerFile(a, second[0]!, 'src/d2/f7.txt').nlink, 1);
  // a fresh store, the same context: the same layers
  assert.deepEqual(await diffIds(b, ctx, 'oci'), second);

  // Every file touched (a fresh clone) and one changed: nothing can be linked (the times differ),
  // and the result is still a clean build's.
  i = 0;
  for (const p of Object.keys(FILES)) {
    const t0 = 1_660_000_000.5 + i++;
    utimesSync(join(ctx, p), t0, t0);
  }
  writeFileSync(join(ctx, 'src/d0/f0.txt'), 'changed too\n');
  const third = await diffIds(a, ctx, 'oci3');
  assert.equal(layerFile(a, third[0]!, 'src/d1/f3.txt').nlink, 1);
  assert.deepEqual(await diffIds(c, ctx, 'oci'), third);
});
