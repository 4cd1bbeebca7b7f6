// Build history and `strata explain --format json`: every kind of miss reason against the nearest
// earlier build, `history ls` newest first, `history show` by id prefix.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxImage } from '../helpers/base-images.js';
import { writeImageLayout, writeLayer, type BuiltLayer } from '../helpers/layers.js';
import { cacheEnv, expectOk, step, type CacheTestEnv, type ExplainJson } from './support.js';

let t: CacheTestEnv;
before(async () => {
  t = await cacheEnv('history');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

const SDE = { SOURCE_DATE_EPOCH: '1700000000' };

function dockerfile(opts: { cmd?: string; env?: string } = {}): string {
  return `FROM busybox AS base
ARG FLAVOR=plain
ENV MODE=${opts.env ?? 'fast'}
RUN echo "$FLAVOR" > /flavor
COPY conf/ /conf/
RUN ${opts.cmd ?? 'ls /conf > /conf-list'}
RUN echo tail > /tail
`;
}

test('explain --format json names each kind of miss reason; history ls and show', async () => {
  const ctx = t.env.context('ctx', { Dockerfile: dockerfile(), 'conf/a.conf': 'a=1\n', 'conf/b.conf': 'b=1\n' });
  const builds: { id: string; expect: Record<string, string> }[] = [];
  const build = async (args: string[], expect: Record<string, string>, env: Record<string, string> = SDE) => {
    await t.ok(ctx, args, env);
    const ex = await t.explain();
    builds.push({ id: ex.build.id, expect });
    return ex;
  };
  const reasonOf = (ex: ExplainJson, text: string) => {
    const s = step(ex.steps, text);
    assert.equal(s.cached, s.reason === '', `${text}: cached iff no reason`);
    return s.reason;
  };

  let ex = await build([], {});
  assert.equal(ex.build.status, 'done');
  assert.equal(ex.build.target, 'base');
  assert.ok(!Number.isNaN(Date.parse(ex.build.time)));
  for (const s of ex.steps) {
    assert.equal(s.cached, false);
    assert.equal(s.reason, 'no previous build');
    assert.match(s.key, /^sha256:[0-9a-f]{64}$/);
    assert.equal(typeof s.duration_ms, 'number');
    assert.equal(typeof s.line, 'number');
  }
  assert.deepEqual(ex.steps.map((s) => [s.stage, s.step, s.line]), [
    ['base', '[base 4/7]', 4],
    ['base', '[base 5/7]', 5],
    ['base', '[base 6/7]', 6],
    ['base', '[base 7/7]', 7],
  ]);

  ex = await build(['--build-arg', 'FLAVOR=spicy'], {});
  assert.equal(reasonOf(ex, 'RUN echo "$FLAVOR"'), 'build arg FLAVOR changed (plain -> spicy)');
  assert.equal(ex.build.args.FLAVOR, 'spicy');
  // Every ARG in scope is in RUN's environment, so the later RUNs see FLAVOR too.
  assert.equal(reasonOf(ex, 'RUN ls /conf'), 'build arg FLAVOR changed (plain -> spicy)');

  writeFileSync(join(ctx, 'conf/a.conf'), 'a=2\n');
  ex = await build(['--build-arg', 'FLAVOR=spicy'], {});
  assert.equal(reasonOf(ex, 'COPY conf/'), 'conf/a.conf content changed');
  assert.equal(reasonOf(ex, 'RUN echo "$FLAVOR"'), '');
  assert.equal(reasonOf(ex, 'RUN ls /conf'), 'parent step [base 5/7] COPY conf/ /conf/ changed');

  chmodSync(join(ctx, 'conf/b.conf'), 0o600);
  ex = await build(['--build-arg', 'FLAVOR=spicy'], {});
  assert.equal(reasonOf(ex, 'COPY conf/'), 'conf/b.conf mode or type changed');

  writeFileSync(join(ctx, 'conf/c.conf'), 'c=1\n');
  rmSync(join(ctx, 'conf/a.conf'));
  ex = await build(['--build-arg', 'FLAVOR=spicy'], {});
  assert.equal(reasonOf(ex, 'COPY conf/'), 'added: conf/c.conf; removed: conf/a.conf');

  writeFileSync(join(ctx, 'Dockerfile'), dockerfile({ cmd: 'ls -l /conf > /conf-list' }));
  ex = await build(['--build-arg', 'FLAVOR=spicy'], {});
  assert.equal(reasonOf(ex, 'RUN ls -l /conf'), 'command changed (was: RUN ls /conf > /conf-list)');
  assert.equal(reasonOf(ex, 'RUN echo tail'), 'parent step [base 6/7] RUN ls -l /conf > /conf-list changed');

  writeFileSync(join(ctx, 'Dockerfile'), dockerfile({ cmd: 'ls -l /conf > /conf-list', env: 'slow' }));
  ex = await build(['--build-arg', 'FLAVOR=spicy'], {});
  assert.equal(reasonOf(ex, 'RUN echo "$FLAVOR"'), 'env MODE changed (fast -> slow)');
  assert.equal(reasonOf(ex, 'COPY conf/'), '', 'ENV changes no file step');

  ex = await build(['--build-arg', 'FLAVOR=spicy', '--no-cache'], {});
  for (const s of ex.steps) assert.equal(s.reason, '--no-cache');

  ex = await build(['--build-arg', 'FLAVOR=spicy', '--no-cache-filter', 'base'], {});
  for (const s of ex.steps) assert.equal(s.reason, '--no-cache');

  // Without SOURCE_DATE_EPOCH the --no-cache runs above left new records; a clean rebuild hits.
  ex = await build(['--build-arg', 'FLAVOR=spicy'], {});
  for (const s of ex.steps) assert.equal(s.cached, true, `${s.step}: ${s.reason}`);

  // history ls: newest first, with ids, status and hit counts.
  const ls = expectOk(await t.env.strata(['history', 'ls']), 'history ls').stdout.trim().split('\n');
  assert.match(ls[0]!, /^ID\s+TIME\s+STATUS\s+CACHED\s+TARGET\s+DOCKERFILE$/);
  const ids = ls.slice(1).map((l) => l.split(/\s+/)[0]);
  assert.deepEqual(ids, builds.map((b) => b.id).reverse());
  assert.match(ls[1]!, /\sdone\s+4\/4\s+base\s/);
  assert.match(ls.at(-1)!, /\sdone\s+0\/4\s+base\s/);
  const lsJson = JSON.parse(expectOk(await t.env.strata(['history', 'ls', '--format', 'json']), 'history ls json').stdout) as { id: string; time: string }[];
  assert.deepEqual(lsJson.map((b) => b.id), ids);
  for (let i = 1; i < lsJson.length; i++) assert.ok(Date.parse(lsJson[i - 1]!.time) >= Date.parse(lsJson[i]!.time));

  // history show / explain by a prefix of the id.
  const chmodBuild = builds[3]!.id;
  const shown = JSON.parse(expectOk(await t.env.strata(['history', 'show', chmodBuild.slice(0, 6), '--format', 'json']), 'history show').stdout) as ExplainJson;
  assert.equal(shown.build.id, chmodBuild);
  assert.equal(step(shown.steps, 'COPY conf/').reason, 'conf/b.conf mode or type changed');
  const text = expectOk(await t.env.strata(['history', 'show', chmodBuild.slice(0, 8)]), 'history show text').stdout;
  assert.match(text, new RegExp(`^build ${chmodBuild} `));
  assert.match(text, /because conf\/b\.conf mode or type changed/);
  const byExplain = await t.explain(chmodBuild.slice(0, 5));
  assert.equal(byExplain.build.id, chmodBuild);
  // A prefix shared by several builds is refused rather than guessed.
  const byFirst = new Map<string, number>();
  for (const id of ids) byFirst.set(id!.slice(0, 1), (byFirst.get(id!.slice(0, 1)) ?? 0) + 1);
  const shared = [...byFirst].find(([, n]) => n > 1);
  if (shared) {
    const amb = await t.env.strata(['history', 'show', shared[0]]);
    assert.notEqual(amb.code, 0);
    assert.match(amb.stderr, new RegExp(`build id prefix ${shared[0]} matches (${shared[1]}|more than 5) builds`));
  }
  const missing = await t.env.strata(['history', 'show', 'zzzz']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /no build with id zzzz/);
});

test('steps a failed build never reached are compared with the last build that ran them', async () => {
  const df = (mid: string) => `FROM busybox\nCOPY a.txt /a\nRUN echo one > /one\nRUN ${mid}\nRUN echo three > /three\n`;
  const ctx = t.env.context('ctx-failed', { Dockerfile: df('echo two > /two'), 'a.txt': 'a\n' });
  await t.ok(ctx, [], SDE);
  writeFileSync(join(ctx, 'Dockerfile'), df('exit 3'));
  const failed = await t.build(ctx, [], SDE);
  assert.notEqual(failed.code, 0);
  const exFailed = await t.explain();
  assert.equal(exFailed.build.status, 'failed');
  assert.equal(step(exFailed.steps, 'RUN echo one').cached, true);

  writeFileSync(join(ctx, 'Dockerfile'), df('echo two > /two'));
  writeFileSync(join(ctx, 'a.txt'), 'changed\n');
  const r = await t.ok(ctx, [], SDE);
  assert.equal(step(r.instructions, 'COPY a.txt').miss, 'a.txt content changed');
  assert.equal(step(r.instructions, 'RUN echo two').miss, 'parent step [stage-0 3/5] RUN echo one > /one changed');
  assert.equal(step(r.instructions, 'RUN echo three').miss, 'parent step [stage-0 4/5] RUN echo two > /two changed');
});

test('explain names an expired TTL and a changed base image', async (tc) => {
  // Its own store: builds at a faked later time would be the newest in the shared one.
  const t = await cacheEnv('history-clock');
  tc.after(() => rmSync(t.env.root, { recursive: true, force: true }));
  const ctx = t.env.context('ctx-base', { Dockerfile: 'FROM busybox\n# strata:cache-ttl=1h\nRUN cat /proc/sys/kernel/random/uuid > /hi\nRUN echo two > /two\n' });
  // Later than the real clock: `explain` without an id shows the build that started last.
  const now = Date.now() + 10 * 24 * 3600_000;
  await t.ok(ctx, [], { STRATA_FAKE_NOW: String(now) });
  await t.ok(ctx, [], { STRATA_FAKE_NOW: String(now + 26 * 3600_000) });
  let ex = await t.explain();
  assert.equal(step(ex.steps, 'RUN cat /proc').reason, 'expired (cached 26h ago, ttl 1h)');
  assert.equal(step(ex.steps, 'RUN echo two').reason, 'parent step [stage-0 2/3] RUN cat /proc/sys/kernel/random/uuid > /hi changed');

  // The same name (busybox) now resolves to another image: busybox plus one more layer.
  const bb = await busyboxImage();
  const diffIds = (JSON.parse(bb.config.toString('utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
  const blobDir = join(t.env.root, 'bb2-blobs');
  mkdirSync(blobDir, { recursive: true });
  const base: BuiltLayer[] = bb.layers.map((d, i) => {
    const path = join(blobDir, d.digest.slice(7));
    copyFileSync(bb.blobs.path(d.digest), path);
    return { path, digest: d.digest, diffId: diffIds[i]!, size: d.size, descriptor: d };
  });
  const extra = await writeLayer(blobDir, [{ name: 'etc/', type: 'directory' }, { name: 'etc/motd', content: 'hello\n' }]);
  const layout = join(t.env.root, 'bb2');
  const image = await writeImageLayout(layout, blobDir, { layers: [...base, extra], config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] }, tag: 'latest' });
  const r = await t.env.strata(['build', '--progress=plain', '--build-context', `busybox=oci-layout://${layout}:latest`, ctx], { env: { STRATA_FAKE_NOW: String(now + 27 * 3600_000) } });
  expectOk(r, 'build on the new base');
  ex = await t.explain();
  assert.equal(step(ex.steps, 'RUN cat /proc').reason, `base image oci-layout://${layout}:latest now ${image.manifestDigest}`);
  assert.equal(step(ex.steps, 'RUN echo two').cached, false);
});
