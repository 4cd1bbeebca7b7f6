// A build clears the store's tmp/ of what dead processes left, and never touches what a live one
// is writing: names carry the writer's pid, also those of files made next to a tmpPath (a blob
// written as `layer-PID-HEX.tmp`, renamed when whole).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/cache/store.js';

const root = mkdtempSync(join(tmpdir(), 'strata-cleantmp-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('cleanTmp keeps a live process\'s temp files, suffixed ones included, and removes the rest', async () => {
  const live = spawn('sleep', ['30']);
  try {
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    const store = Store.open(join(root, 'store'));
    try {
      const dir = join(store.root, 'tmp');
      const keep = [`layer-${live.pid}-b51a3dbd61a5.tmp`, `layer-${live.pid}-b51a3dbd61a5`, `image-${live.pid}-0a1b2c.erofs`];
      const gone = [`layer-${dead}-b51a3dbd61a5.tmp`, `unpack-${dead}-0a1b2c`, 'junk'];
      for (const n of [...keep, ...gone]) writeFileSync(join(dir, n), 'x');
      mkdirSync(join(dir, `copy-${dead}-ffee00`, 'upper'), { recursive: true });
      store.cleanTmp();
      for (const n of keep) assert.ok(existsSync(join(dir, n)), `${n} is kept`);
      for (const n of [...gone, `copy-${dead}-ffee00`]) assert.ok(!existsSync(join(dir, n)), `${n} is removed`);
    } finally {
      store.close();
    }
  } finally {
    live.kill();
  }
});
