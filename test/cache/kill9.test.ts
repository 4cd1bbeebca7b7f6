// kill -9 at random points of a build: the next build must still succeed, `strata doctor` must find
// the store consistent (or repair it), and no overlay mount of a dead build may stay behind.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { STRATA_BIN } from '../build/harness.js';
import { cacheEnv, expectOk, misses, mountsUnder, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
before(async () => {
  t = await cacheEnv('kill9');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

/** Starts a build and SIGKILLs the strata process after `delayMs` (or lets it finish first). */
async function killedBuild(ctx: string, delayMs: number, args: string[]): Promise<{ killed: boolean; code: number | null }> {
  const child = spawn(STRATA_BIN, ['build', '--progress=plain', ...t.busybox, ...args, ctx], {
    env: { ...process.env, STRATA_ROOT: t.env.store },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const raced = await Promise.race([exited.then(() => 'exited' as const), sleep(delayMs).then(() => 'timer' as const)]);
  if (raced === 'exited') return { killed: false, code: await exited };
  child.kill('SIGKILL');
  await exited;
  return { killed: true, code: null };
}

test('builds killed with SIGKILL at random points leave a store the next build and doctor accept', async () => {
  const ctx = t.env.context('ctx', {
    Dockerfile: `FROM busybox AS deps
WORKDIR /work
COPY a.txt ./
RUN cat a.txt > out-a && sleep 0.2
COPY b.txt ./
RUN --mount=type=cache,target=/cache,sharing=locked cat b.txt >> /cache/seen && cat a.txt b.txt > both

FROM busybox
COPY --from=deps /work/both /both
RUN head -c 300000 /dev/urandom > /random && sleep 0.1
COPY c.txt /c.txt
`,
    'a.txt': 'a\n',
    'b.txt': 'b\n',
    'c.txt': 'c\n',
  });
  let killed = 0;
  const started = Date.now();
  for (let i = 0; i < 8 && Date.now() - started < 60_000; i++) {
    // A different input each time, so every attempt has steps left to run when it dies.
    writeFileSync(join(ctx, 'b.txt'), `b ${i}\n`);
    if (i % 3 === 2) writeFileSync(join(ctx, 'c.txt'), `c ${i}\n`);
    // Half the attempts die early, while two RUN steps and a sleep are still ahead of them (a
    // build here takes about half a second or more); the others at any point, or not at all.
    const delay = Math.floor(i % 2 === 0 ? 100 + Math.random() * 250 : Math.random() * 1500);
    const r = await killedBuild(ctx, delay, i % 2 ? ['--jobs', '1'] : []);
    if (r.killed) killed++;
    else assert.equal(r.code, 0, `attempt ${i} finished on its own and must have succeeded`);
  }
  assert.ok(killed > 0, 'at least one build was killed mid-way');

  writeFileSync(join(ctx, 'c.txt'), 'final\n');
  const clean = await t.ok(ctx);
  assert.match(clean.digest, /^sha256:[0-9a-f]{64}$/);
  const doctor = expectOk(await t.env.strata(['doctor']), 'strata doctor');
  assert.match(doctor.stdout, /store is consistent|repaired what could be/);
  const again = expectOk(await t.env.strata(['doctor']), 'strata doctor, second run');
  assert.match(again.stdout, /store is consistent/, 'a second doctor run finds nothing left to repair');
  assert.deepEqual(mountsUnder(t.env.store), [], 'no overlay mount is left under the store');

  // Builds that died show as killed, never as still running.
  const ls = JSON.parse(expectOk(await t.env.strata(['history', 'ls', '--format', 'json']), 'history ls').stdout) as { status: string }[];
  const statuses = ls.map((b) => b.status);
  assert.ok(statuses.every((s) => s === 'done' || s === 'killed'), statuses.join(', '));
  assert.ok(statuses.filter((s) => s === 'killed').length <= killed);

  const rebuild = await t.ok(ctx);
  assert.equal(misses(rebuild.instructions), '', 'after the repair the last build is fully cached');
  assert.deepEqual(mountsUnder(t.env.store), []);
});
