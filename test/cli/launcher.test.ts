// bin/strata runs the bundled CLI from a V8 code cache (scripts/bundle.mjs). These tests make a
// private copy of the repository's launcher, bundle script and compiled sources, bundle it, and
// check which path each run takes, that a stale or damaged cache is never trusted, and that a real
// build through the bundle works, its copy worker thread and ES-only addon included.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { REPO_ROOT, run } from '../build/harness.js';

let root: string;
let bundleDir: string;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'strata-launcher-'));
  for (const d of ['bin', 'scripts', 'dist']) mkdirSync(join(root, d));
  cpSync(join(REPO_ROOT, 'bin', 'strata'), join(root, 'bin', 'strata'));
  cpSync(join(REPO_ROOT, 'bin', 'package.json'), join(root, 'bin', 'package.json'));
  cpSync(join(REPO_ROOT, 'scripts', 'bundle.mjs'), join(root, 'scripts', 'bundle.mjs'));
  cpSync(join(REPO_ROOT, 'package.json'), join(root, 'package.json'));
  cpSync(join(REPO_ROOT, 'dist', 'src'), join(root, 'dist', 'src'), { recursive: true });
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'));
  const r = await run(process.execPath, [join(root, 'scripts', 'bundle.mjs')]);
  assert.equal(r.code, 0, r.stderr);
  bundleDir = join(root, 'dist', 'bundle');
});

after(() => rmSync(root, { recursive: true, force: true }));

function strata(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [join(root, 'bin', 'strata'), ...args], { env: { STRATA_TRACE_LAUNCH: '1', ...env } });
}

function launchLine(stderr: string): string {
  const m = /^launch: (.*)$/m.exec(stderr);
  assert.ok(m, `no launch line in: ${stderr}`);
  return m[1]!;
}

test('the bundle runs from a code cache written by the first run of each command', async () => {
  const first = await strata(['history', 'ls', '--root', join(root, 'store')]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(launchLine(first.stderr), 'bundle (code cache none)');
  assert.ok(existsSync(join(bundleDir, 'strata.cjs.history.v8cache')));

  const second = await strata(['history', 'ls', '--root', join(root, 'store')]);
  assert.equal(launchLine(second.stderr), 'bundle (code cache used)');
  assert.equal(second.stdout, first.stdout);

  // Another command keeps its own cache.
  const version = await strata(['--version']);
  assert.equal(version.stdout.trim(), '0.1.0');
  assert.equal(launchLine(version.stderr), 'bundle (code cache none)');
  assert.equal(launchLine((await strata(['--version'])).stderr), 'bundle (code cache used)');
});

test('a failed command leaves no cache; the next successful one writes it', async () => {
  const failed = await strata(['images', '--no-such-flag']);
  assert.notEqual(failed.code, 0);
  assert.equal(launchLine(failed.stderr), 'bundle (code cache none)');
  assert.ok(!existsSync(join(bundleDir, 'strata.cjs.images.v8cache')));
  const ok = await strata(['images', '--root', join(root, 'store')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(existsSync(join(bundleDir, 'strata.cjs.images.v8cache')));
  assert.equal(launchLine((await strata(['images', '--root', join(root, 'store')])).stderr), 'bundle (code cache used)');
});

test('a damaged code cache is never given to V8 (which would crash on it); the command runs and rewrites it', async () => {
  await strata(['--version']);
  const file = join(bundleDir, 'strata.cjs.other.v8cache');
  const buf = readFileSync(file);
  const payload = buf.indexOf(10) + 1;
  for (let i = payload + 16; i < buf.length; i += 97) buf[i] = buf[i]! ^ 0xff;
  writeFileSync(file, buf);
  const damaged = await strata(['--version']);
  assert.equal(damaged.code, 0, damaged.stderr);
  assert.equal(damaged.stdout.trim(), '0.1.0');
  assert.equal(launchLine(damaged.stderr), 'bundle (code cache damaged)');
  assert.equal(launchLine((await strata(['--version'])).stderr), 'bundle (code cache used)');
});

test('a cache V8 refuses (made under other V8 flags) is replaced', async () => {
  await strata(['--version']);
  const withFlag = (args: string[]) =>
    run(process.execPath, ['--stack-size=2000', join(root, 'bin', 'strata'), ...args], { env: { STRATA_TRACE_LAUNCH: '1' } });
  const refused = await withFlag(['--version']);
  assert.equal(refused.code, 0, refused.stderr);
  assert.equal(launchLine(refused.stderr), 'bundle (code cache rejected)');
  assert.equal(refused.stdout.trim(), '0.1.0');
  assert.equal(launchLine((await withFlag(['--version'])).stderr), 'bundle (code cache used)');
});

test('a cache made for another bundle file is not offered to V8', async () => {
  await strata(['--version']);
  const bundle = join(bundleDir, 'strata.cjs');
  const text = readFileSync(bundle, 'utf8');
  // Same length, other content: V8's own check looks at the length only.
  writeFileSync(bundle, text.replace('"0.1.0"', '"0.1.9"'));
  const later = new Date(Date.now() + 2000);
  utimesSync(bundle, later, later);
  const r = await strata(['--version']);
  assert.equal(launchLine(r.stderr), 'bundle (code cache none)');
  assert.equal(r.stdout.trim(), '0.1.9');
  // Back to the old bytes and even the old mtime: the ctime still tells the files apart.
  writeFileSync(bundle, text);
  utimesSync(bundle, later, later);
  const back = await strata(['--version']);
  assert.equal(launchLine(back.stderr), 'bundle (code cache none)');
  assert.equal(back.stdout.trim(), '0.1.0');
});

test('compiled sources newer than the bundle run as modules; STRATA_NO_BUNDLE=1 forces them', async () => {
  assert.equal(launchLine((await strata(['--version'], { STRATA_NO_BUNDLE: '1' })).stderr), 'modules');
  const main = join(root, 'dist', 'src', 'cli', 'main.js');
  const bundleTime = statSync(join(bundleDir, 'strata.cjs')).mtime;
  const newer = new Date(bundleTime.getTime() + 10_000);
  utimesSync(main, newer, newer);
  try {
    const r = await strata(['--version']);
    assert.equal(launchLine(r.stderr), 'modules');
    assert.equal(r.stdout.trim(), '0.1.0');
  } finally {
    utimesSync(main, bundleTime, bundleTime);
  }
  assert.match(launchLine((await strata(['--version'])).stderr), /^bundle/);
});

test('the bundled copy worker runs file jobs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-launcher-worker-'));
  try {
    writeFileSync(join(dir, 'src'), 'worker copy\n');
    const worker = new Worker(pathToFileURL(join(bundleDir, 'copy-worker.js')));
    try {
      const reply = await new Promise<{ id: number; error?: unknown }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.postMessage({ id: 7, jobs: [{ kind: 'file', src: join(dir, 'src'), dst: join(dir, 'dst'), size: 12, mode: 0o640, atime: 1000, mtime: 2000 }] });
      });
      assert.deepEqual(reply, { id: 7 });
    } finally {
      await worker.terminate();
    }
    assert.equal(readFileSync(join(dir, 'dst'), 'utf8'), 'worker copy\n');
    const st = statSync(join(dir, 'dst'));
    assert.equal(st.mode & 0o7777, 0o640);
    assert.equal(st.mtimeMs, 2_000_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a build through the bundle: many files on worker threads, COPY --from a stage', async () => {
  const ctx = join(root, 'ctx');
  for (let d = 0; d < 12; d++) {
    mkdirSync(join(ctx, 'src', `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(join(ctx, 'src', `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`);
  }
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch AS files\nCOPY src /src\n\nFROM scratch\nCOPY --from=files /src /copied\n');
  const out = join(root, 'out');
  const r = await strata(['build', ctx, '--root', join(root, 'store'), '--progress', 'plain', '-o', `type=local,dest=${out}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(launchLine(r.stderr), /^bundle/);
  const dirs = readdirSync(join(out, 'copied')).sort();
  assert.equal(dirs.length, 12);
  let files = 0;
  for (const d of dirs) {
    for (const f of readdirSync(join(out, 'copied', d))) {
      assert.equal(readFileSync(join(out, 'copied', d, f), 'utf8'), `file ${d.slice(1)}/${f.slice(1, -4)}\n`);
      files++;
    }
  }
  assert.equal(files, 1200);
});
