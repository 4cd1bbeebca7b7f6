// A build killed with -9 leaves a running container and its bundle; cleanupStale removes them
// and leaves live builds alone.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupStale } from '../../src/executor/cleanup.js';
import { runContainer } from '../../src/executor/run.js';
import { bundlesDir, runtimeRoot } from '../../src/executor/layout.js';
import type { Runtime, RuntimeName } from '../../src/executor/types.js';
import { listContainers, makeBusyboxRootfs, runtimeOrSkip, tempDir } from './fixtures.js';

/** Pids whose command line contains `needle`. */
function processesWith(needle: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ').includes(needle)) pids.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

async function eventually(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(check(), what);
}

for (const name of ['crun', 'runc'] as RuntimeName[]) {
  const found = await runtimeOrSkip(name);
  const skip = typeof found === 'string' ? found : false;

  describe(`cleanupStale with ${name}`, { skip }, () => {
    const rt = found as Runtime;
    let base: string;
    let rootfs: string;
    let stateDir: string;
    before(() => {
      base = tempDir(`stale-${name}`);
      rootfs = makeBusyboxRootfs(join(base, 'rootfs'));
      stateDir = join(base, 'state');
    });
    after(() => rmSync(base, { recursive: true, force: true }));

    it('removes the container and bundle of a build killed with -9, not those of live builds', async () => {
      const marker = `${4000 + Math.floor(Math.random() * 999)}`;
      const script = join(base, 'victim.mjs');
      const runJs = new URL('../../src/executor/run.js', import.meta.url).href;
      writeFileSync(
        script,
        `import { runContainer } from ${JSON.stringify(runJs)};\n` +
          `await runContainer({ rootfs: ${JSON.stringify(rootfs)}, args: ['sh', '-c', 'echo started; exec sleep ${marker}'], env: [], cwd: '/',\n` +
          `  user: { uid: 0, gid: 0, additionalGids: [] }, network: 'none', mounts: [], stdout: (b) => process.stdout.write(b) },\n` +
          `  { runtime: ${JSON.stringify(rt)}, stateDir: ${JSON.stringify(stateDir)} });\n`,
      );
      const victim = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        victim.stdout.on('data', (b: Buffer) => b.toString().includes('started') && resolve());
        victim.on('exit', (code) => reject(new Error(`victim exited early with ${code}`)));
      });
      victim.kill('SIGKILL');
      await new Promise((r) => victim.once('exit', r));

      const root = runtimeRoot(stateDir, rt.name);
      const [staleId] = listContainers(rt, root);
      assert.ok(staleId, 'the killed build left its container behind');
      assert.deepEqual(readdirSync(bundlesDir(stateDir)), [staleId]);
      assert.ok(processesWith(`sleep ${marker}`).length > 0, 'its process still runs');

      // A live build in the same stateDir must survive the cleanup.
      const ac = new AbortController();
      let liveStarted!: () => void;
      const started = new Promise<void>((r) => (liveStarted = r));
      const live = runContainer(
        { rootfs, args: ['sh', '-c', 'echo up; exec sleep 100'], env: [], cwd: '/', user: { uid: 0, gid: 0, additionalGids: [] },
          network: 'none', mounts: [], stdout: () => liveStarted(), signal: ac.signal },
        { runtime: rt, stateDir },
      );
      await started;

      const report = await cleanupStale(stateDir);
      assert.deepEqual(report.containers, [`${rt.name}:${staleId}`]);
      assert.deepEqual(report.bundles, [staleId]);
      assert.deepEqual(report.failures, []);
      const left = listContainers(rt, root);
      assert.equal(left.length, 1);
      assert.notEqual(left[0], staleId);
      await eventually(() => processesWith(`sleep ${marker}`).length === 0, 'the stale step process is gone');
      await eventually(() => processesWith(staleId!).length === 0, 'the orphaned runtime process exited');

      ac.abort();
      await assert.rejects(live, (e: { code?: string }) => e.code === 'ABORTED');
      assert.deepEqual(listContainers(rt, root), []);
      assert.deepEqual(readdirSync(bundlesDir(stateDir)), []);
      assert.deepEqual(await cleanupStale(stateDir), { containers: [], bundles: [], failures: [] });
    });
  });
}
