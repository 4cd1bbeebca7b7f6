// Context files and the cache: what must not bust it (a fresh clone, touch, ignored files) and what
// must, with a reason naming the path (mode, content, added, removed).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheEnv, misses, step, type CacheTestEnv } from './support.js';

let t: CacheTestEnv;
before(async () => {
  t = await cacheEnv('context');
});
after(() => rmSync(t.env.root, { recursive: true, force: true }));

const DOCKERFILE = `FROM busybox
WORKDIR /usr/src/app
COPY package.json ./
RUN wc -c package.json > /pkg-size
COPY src/ ./src/
COPY bin/tool /usr/local/bin/tool
RUN ls -lR /usr/src/app > /listing
`;

function files(): Record<string, string> {
  return {
    Dockerfile: DOCKERFILE,
    '.dockerignore': 'src/*.log\nnotes/\n',
    'package.json': '{"name":"app"}\n',
    'src/index.js': 'console.log(1)\n',
    'src/lib/util.js': 'export const x = 1;\n',
    'src/debug.log': 'noise\n',
    'bin/tool': '#!/bin/sh\necho tool\n',
    'notes/todo.txt': 'nothing\n',
  };
}

function walk(dir: string): string[] {
  const out: string[] = [dir];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

function touchAll(dir: string, when: Date): void {
  for (const p of walk(dir)) utimesSync(p, when, when);
}

test('a fresh copy of the context (new inodes, new mtimes) and touch in place keep every step cached', async () => {
  const ctx = t.env.context('ctx', files());
  const first = await t.ok(ctx);
  assert.equal(first.instructions.length, 6);
  assert.ok(first.contextBytesRead > 0);

  // As after `git clone`: every file is new (cp without -p), then every mtime moves.
  const clone = join(t.env.root, 'clone');
  cpSync(ctx, clone, { recursive: true, preserveTimestamps: false });
  touchAll(clone, new Date(Date.now() + 60_000));
  assert.notEqual(statSync(join(clone, 'package.json')).ino, statSync(join(ctx, 'package.json')).ino);
  const cloned = await t.ok(clone);
  assert.equal(misses(cloned.instructions), '', 'a clone of the same files hits every step');
  assert.ok(cloned.contextBytesRead > 0, 'new inodes are read once');

  // Touch in place: contents are re-read (the stat cache cannot vouch for them), keys stay.
  const unchanged = await t.ok(ctx);
  assert.equal(misses(unchanged.instructions), '');
  assert.equal(unchanged.contextBytesRead, 0, 'an unchanged tree is not re-read');
  touchAll(ctx, new Date(Date.now() + 120_000));
  const touched = await t.ok(ctx);
  assert.equal(misses(touched.instructions), '', 'touch changes no key');
  assert.ok(touched.contextBytesRead > 0, `touched files are re-read (read ${touched.contextBytesRead})`);
  const again = await t.ok(ctx);
  assert.equal(misses(again.instructions), '');
  assert.equal(again.contextBytesRead, 0, 'the next unchanged rebuild reads nothing');
  const ex = await t.explain();
  assert.ok(ex.steps.every((s) => s.cached));
});

test('chmod, edits, added and removed files miss with a reason that names the path', async () => {
  const ctx = t.env.context('ctx2', files());
  await t.ok(ctx);

  chmodSync(join(ctx, 'bin/tool'), 0o755);
  let r = await t.ok(ctx);
  let s = step(r.instructions, 'COPY bin/tool');
  assert.equal(s.cached, false);
  assert.match(s.miss ?? '', /bin\/tool/);
  assert.match(s.miss ?? '', /mode/);
  assert.equal(s.miss, 'bin/tool mode or type changed');
  assert.match(step(r.instructions, 'RUN ls -lR').miss ?? '', /^parent step \[stage-0 \d\/\d\] COPY bin\/tool \/usr\/local\/bin\/tool changed$/);
  for (const name of ['WORKDIR', 'COPY package.json', 'RUN wc', 'COPY src/']) assert.ok(step(r.instructions, name).cached, name);
  let ex = await t.explain();
  assert.equal(step(ex.steps, 'COPY bin/tool').reason, 'bin/tool mode or type changed');

  writeFileSync(join(ctx, 'src/lib/util.js'), 'export const x = 2;\n');
  r = await t.ok(ctx);
  s = step(r.instructions, 'COPY src/');
  assert.equal(s.miss, 'src/lib/util.js content changed');
  assert.ok(step(r.instructions, 'COPY package.json').cached);

  writeFileSync(join(ctx, 'src/new.js'), 'new\n');
  rmSync(join(ctx, 'src/index.js'));
  r = await t.ok(ctx);
  assert.equal(step(r.instructions, 'COPY src/').miss, 'added: src/new.js; removed: src/index.js');
  ex = await t.explain();
  assert.equal(step(ex.steps, 'COPY src/').reason, 'added: src/new.js; removed: src/index.js');
  assert.equal(step(ex.steps, 'COPY src/').cached, false);

  writeFileSync(join(ctx, 'package.json'), '{"name":"app","version":"2"}\n');
  r = await t.ok(ctx);
  assert.equal(step(r.instructions, 'COPY package.json').miss, 'package.json content changed');
  assert.match(step(r.instructions, 'RUN wc').miss ?? '', /^parent step .*COPY package\.json \.\/ changed$/);

  const after = await t.ok(ctx);
  assert.equal(misses(after.instructions), '');
});

test('a .dockerignore\'d file changing, appearing or vanishing busts nothing', async () => {
  const ctx = t.env.context('ctx3', files());
  await t.ok(ctx);
  writeFileSync(join(ctx, 'src/debug.log'), 'much more noise\n');
  writeFileSync(join(ctx, 'src/other.log'), 'new noise\n');
  writeFileSync(join(ctx, 'notes/todo.txt'), 'everything\n');
  let r = await t.ok(ctx);
  assert.equal(misses(r.instructions), '', 'ignored files are not part of any key');
  rmSync(join(ctx, 'notes'), { recursive: true });
  rmSync(join(ctx, 'src/debug.log'));
  r = await t.ok(ctx);
  assert.equal(misses(r.instructions), '');
  // The ignore file itself is not copied here, so editing it to ignore nothing new changes nothing.
  writeFileSync(join(ctx, '.dockerignore'), 'src/*.log\nnotes/\n# a comment\n');
  r = await t.ok(ctx);
  assert.equal(misses(r.instructions), '');
});

test('a RUN bind mount of the context sees only what its key covers (.dockerignore applies)', async () => {
  const ctx = t.env.context('ctx-bind', {
    Dockerfile: `FROM busybox
RUN --mount=type=bind,source=.,target=/src ls -a /src > /listing && cat /src/*.txt > /texts
RUN --mount=type=bind,source=conf,target=/conf,rw cat /conf/* > /conf-all && echo scribble > /conf/new
RUN --mount=type=bind,source=keep.txt,target=/keep.txt cat /keep.txt > /keep-copy
`,
    '.dockerignore': 'secret.txt\nconf/*.bak\n',
    'keep.txt': 'keep\n',
    'secret.txt': 'secret\n',
    'conf/app.conf': 'a=1\n',
    'conf/app.bak': 'old\n',
  });
  const out = join(t.env.root, 'bind-out');
  await t.ok(ctx, ['--output', `type=local,dest=${out}`]);
  const listing = readFileSync(join(out, 'listing'), 'utf8').split('\n').filter(Boolean);
  assert.ok(!listing.includes('secret.txt'), `ignored file hidden from the bind: ${listing.join(' ')}`);
  assert.ok(listing.includes('keep.txt'));
  assert.equal(readFileSync(join(out, 'texts'), 'utf8'), 'keep\n');
  assert.equal(readFileSync(join(out, 'conf-all'), 'utf8'), 'a=1\n');
  assert.equal(readFileSync(join(out, 'keep-copy'), 'utf8'), 'keep\n');
  assert.ok(!existsSync(join(ctx, 'conf/new')), 'writes to a rw bind do not reach the context');

  // So changing an ignored file cannot leave a stale result behind: nothing to miss for.
  writeFileSync(join(ctx, 'secret.txt'), 'another secret\n');
  writeFileSync(join(ctx, 'conf/app.bak'), 'older\n');
  const r = await t.ok(ctx);
  assert.equal(misses(r.instructions), '');
  writeFileSync(join(ctx, 'keep.txt'), 'kept\n');
  const r2 = await t.ok(ctx);
  assert.equal(step(r2.instructions, 'source=.,target=/src').miss, 'keep.txt content changed');
  assert.equal(step(r2.instructions, 'source=keep.txt').miss, 'keep.txt content changed');
});
