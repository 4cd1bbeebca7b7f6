import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checksumRootfsSources, checksumSources, MemoryStatCache, type ChecksumOptions } from '../../src/context/checksum.js';
import { isStrataError } from '../../src/errors.js';
import { setAttributeSync } from 'fs-xattr';

let work: string;
let n = 0;

async function makeTree(root: string): Promise<void> {
  const files: Record<string, string> = {
    'package.json': '{"name":"x"}',
    'src/index.ts': 'export const a = 1;\n',
    'src/lib/util.ts': 'export function f() {}\n',
    'README.md': '# hi\n',
    'notes/secret.txt': 'ignored\n',
    'big.bin': 'x'.repeat(300 * 1024),
  };
  for (const [rel, content] of Object.entries(files)) {
    await fsp.mkdir(path.join(root, path.dirname(rel)), { recursive: true });
    await fsp.writeFile(path.join(root, rel), content);
    await fsp.chmod(path.join(root, rel), 0o644);
  }
  await fsp.chmod(path.join(root, 'src'), 0o755);
  await fsp.chmod(path.join(root, 'src/lib'), 0o755);
  await fsp.chmod(path.join(root, 'notes'), 0o755);
  await fsp.symlink('src/index.ts', path.join(root, 'entry.ts'));
}

async function freshTree(): Promise<string> {
  const d = path.join(work, `tree${n++}`);
  await fsp.mkdir(d);
  await makeTree(d);
  return d;
}

const ignoreNotes = (rel: string): boolean => rel === 'notes' || rel.startsWith('notes/');

function sum(root: string, extra: Partial<ChecksumOptions> = {}) {
  return checksumSources({ root, sources: ['.'], ignore: ignoreNotes, ...extra });
}

async function touchAll(dir: string, when: Date): Promise<void> {
  for (const name of await fsp.readdir(dir)) {
    const p = path.join(dir, name);
    const st = await fsp.lstat(p);
    if (st.isDirectory()) await touchAll(p, when);
    await fsp.lutimes(p, when, when);
  }
}

before(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'strata-cs-'));
});
after(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});

describe('checksumSources', () => {
  it('lists the selected files with type, mode, size and content digest', async () => {
    const root = await freshTree();
    const r = await sum(root);
    const byPath = new Map(r.files.map((f) => [f.path, f]));
    assert.ok(!byPath.has('notes') && !byPath.has('notes/secret.txt'), 'ignored paths are not selected');
    const idx = byPath.get('src/index.ts');
    assert.ok(idx);
    assert.equal(idx.type, 'file');
    assert.equal(idx.mode, 0o644);
    assert.equal(idx.size, 20);
    assert.equal(idx.contentDigest, 'sha256:' + createHash('sha256').update('export const a = 1;\n').digest('hex'));
    const link = byPath.get('entry.ts');
    assert.equal(link?.type, 'symlink');
    assert.equal(link?.contentDigest, 'sha256:' + createHash('sha256').update('src/index.ts').digest('hex'));
    assert.equal(byPath.get('src')?.type, 'dir');
    assert.equal(byPath.get('src')?.uid, undefined, 'context checksums carry no owner');
    assert.match(r.digest, /^sha256:[0-9a-f]{64}$/);
  });

  it('ignores mtimes: same digest after touching every file', async () => {
    const root = await freshTree();
    const a = await sum(root);
    await touchAll(root, new Date('2031-05-06T07:08:09Z'));
    const b = await sum(root);
    assert.equal(b.digest, a.digest);
  });

  it('ignores inodes, owners and the root dir mode: same digest for a copy elsewhere', async () => {
    const root = await freshTree();
    const a = await sum(root);
    const copy = await fsp.mkdtemp(path.join(work, 'copy-'));
    execFileSync('cp', ['-r', root + '/.', copy]);
    await fsp.chmod(copy, 0o700);
    execFileSync('chown', ['-R', '4321:4321', copy]);
    const b = await sum(copy);
    assert.equal(b.digest, a.digest);
  });

  it('is the same for a fresh git clone', async () => {
    const root = await freshTree();
    const git = (cwd: string, ...args: string[]) =>
      execFileSync('git', ['-c', 'user.email=t@t', '-c', 'user.name=t', ...args], { cwd, stdio: 'pipe' });
    git(root, 'init', '-q');
    git(root, 'add', '-A');
    git(root, 'commit', '-qm', 'x');
    const clone = path.join(work, `clone${n++}`);
    git(work, 'clone', '-q', root, clone);
    const ignore = (rel: string): boolean => rel === '.git' || rel.startsWith('.git/') || ignoreNotes(rel);
    const a = await checksumSources({ root, sources: ['.'], ignore });
    const b = await checksumSources({ root: clone, sources: ['.'], ignore });
    assert.equal(b.digest, a.digest);
  });

  it('changes with content, mode, a rename or an added file', async () => {
    const root = await freshTree();
    const base = (await sum(root)).digest;
    const seen = new Set([base]);
    const step = async (what: string, fn: () => Promise<void>) => {
      await fn();
      const d = (await sum(root)).digest;
      assert.ok(!seen.has(d), `${what} must change the digest`);
      seen.add(d);
    };
    await step('content', () => fsp.writeFile(path.join(root, 'src/index.ts'), 'export const a = 2;\n'));
    await step('mode', () => fsp.chmod(path.join(root, 'src/lib/util.ts'), 0o755));
    await step('rename', () => fsp.rename(path.join(root, 'README.md'), path.join(root, 'README.txt')));
    await step('added file', () => fsp.writeFile(path.join(root, 'src/new.ts'), ''));
    await step('added empty dir', () => fsp.mkdir(path.join(root, 'src/empty')));
    await step('symlink target', async () => {
      await fsp.unlink(path.join(root, 'entry.ts'));
      await fsp.symlink('src/lib/util.ts', path.join(root, 'entry.ts'));
    });
  });

  it('does not change when an ignored or excluded file changes', async () => {
    const root = await freshTree();
    const a = await sum(root, { excludes: ['*.md'] });
    await fsp.writeFile(path.join(root, 'notes/secret.txt'), 'changed');
    await fsp.writeFile(path.join(root, 'notes/another.txt'), 'new');
    await fsp.writeFile(path.join(root, 'README.md'), 'changed');
    const b = await sum(root, { excludes: ['*.md'] });
    assert.equal(b.digest, a.digest);
    assert.notEqual((await sum(root)).digest, a.digest, 'without the exclude README counts');
  });

  it('covers only what the sources select', async () => {
    const root = await freshTree();
    const a = await sum(root, { sources: ['src'] });
    assert.deepEqual(a.files.map((f) => f.path), ['src', 'src/index.ts', 'src/lib', 'src/lib/util.ts']);
    await fsp.writeFile(path.join(root, 'package.json'), '{}');
    assert.equal((await sum(root, { sources: ['src'] })).digest, a.digest);
    const w = await sum(root, { sources: ['src/*.ts', 'nomatch*'] });
    assert.deepEqual(w.files.map((f) => f.path), ['src/index.ts']);
    const p = await sum(root, { sources: ['src/lib/util.ts'], parents: true });
    assert.deepEqual(p.files.map((f) => f.path), ['.', 'src', 'src/lib', 'src/lib/util.ts']);
    assert.notEqual(p.digest, (await sum(root, { sources: ['src/lib/util.ts'] })).digest);
  });

  it('accepts ADD URL words without reading them, keyed by the URL', async () => {
    const root = await freshTree();
    const a = await sum(root, { sources: ['http://127.0.0.1:1/a.tgz', 'package.json'] });
    assert.deepEqual(a.files.map((f) => f.path), ['package.json']);
    const b = await sum(root, { sources: ['http://127.0.0.1:1/b.tgz', 'package.json'] });
    assert.notEqual(a.digest, b.digest);
  });

  it('skips rereading unchanged files with a warm stat cache', async () => {
    const root = await freshTree();
    const cache = new MemoryStatCache();
    const cold = await sum(root, { statCache: cache });
    assert.ok(cold.bytesRead > 300 * 1024);
    const warm = await sum(root, { statCache: cache });
    assert.equal(warm.bytesRead, 0);
    assert.equal(warm.digest, cold.digest);
    await fsp.writeFile(path.join(root, 'package.json'), '{"name":"y"}');
    const after1 = await sum(root, { statCache: cache });
    assert.equal(after1.bytesRead, '{"name":"y"}'.length, 'only the changed file is read');
    assert.notEqual(after1.digest, cold.digest);
    const restored = MemoryStatCache.fromJSON(JSON.parse(JSON.stringify(cache.toJSON())));
    assert.equal((await sum(root, { statCache: restored })).bytesRead, 0);
  });

  it('reports missing and escaping sources', async () => {
    const root = await freshTree();
    await fsp.symlink('../../outside', path.join(root, 'esc'));
    await assert.rejects(sum(root, { sources: ['missing.txt'] }), (e: unknown) => isStrataError(e) && e.code === 'COPY_NO_MATCH' && e.message.includes('"/missing.txt": not found'));
    await assert.rejects(sum(root, { sources: ['../x'] }), (e: unknown) => isStrataError(e) && e.code === 'COPY_OUTSIDE_CONTEXT');
    await assert.rejects(sum(root, { sources: ['esc'] }), (e: unknown) => isStrataError(e) && e.code === 'COPY_OUTSIDE_CONTEXT');
    await assert.rejects(sum(root, { sources: ['notes/secret.txt'] }), (e: unknown) => isStrataError(e) && e.code === 'COPY_NO_MATCH');
  });
});

describe('checksumRootfsSources', () => {
  it('resolves symlinks inside the rootfs and counts owners', async () => {
    const root = await freshTree();
    await fsp.mkdir(path.join(root, 'etc'));
    await fsp.writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
    await fsp.symlink('/etc/passwd', path.join(root, 'pw'));
    const r = await checksumRootfsSources({ root, sources: ['/pw'] });
    assert.equal(r.files.length, 1);
    assert.equal(r.files[0].contentDigest, 'sha256:' + createHash('sha256').update('root:x:0:0::/root:/bin/sh\n').digest('hex'));
    const before1 = (await checksumRootfsSources({ root, sources: ['/src'] })).digest;
    const ctxBefore = (await checksumSources({ root, sources: ['/src'] })).digest;
    await fsp.chown(path.join(root, 'src/index.ts'), 1000, 1000);
    const afterChown = (await checksumRootfsSources({ root, sources: ['/src'] })).digest;
    assert.notEqual(afterChown, before1);
    setAttributeSync(path.join(root, 'src/index.ts'), 'user.strata.cap', 'x');
    const withX = await checksumRootfsSources({ root, sources: ['/src'] });
    assert.notEqual(withX.digest, afterChown, 'xattrs are copied from a rootfs, so they count');
    assert.deepEqual(withX.files.find((f) => f.path === 'src/index.ts')?.xattrs, { 'user.strata.cap': Buffer.from('x').toString('hex') });
    assert.equal((await checksumSources({ root, sources: ['/src'] })).digest, ctxBefore, 'context files are copied as 0:0 anyway');
  });
});
