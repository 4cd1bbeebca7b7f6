import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { getAttributeSync, setAttributeSync } from 'fs-xattr';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { copyFiles, ensureWorkdir, type CopyRequest } from '../../src/fileops/copy.js';
import { isStrataError } from '../../src/errors.js';
import { parseDockerignore, PatternMatcher } from '../../src/context/dockerignore.js';
import { exists, listTree, mkTree, modeOf, read, tmpdir } from './helpers.js';

let ctx: string;
let work: string;
let n = 0;

async function freshRoot(): Promise<string> {
  const d = path.join(work, `root${n++}`);
  await fsp.mkdir(d);
  return d;
}

function req(destRoot: string, sources: string[], dest: string, extra: Partial<CopyRequest> = {}): CopyRequest {
  return { srcRoot: ctx, srcIsRootfs: false, sources, dest, destRoot, workdir: '/', ...extra };
}

async function rejectsCode(p: Promise<unknown>, code: string, msg?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isStrataError(e), `expected StrataError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (msg) assert.match(e.message, msg);
    return true;
  });
}

before(async () => {
  work = await tmpdir();
  ctx = path.join(work, 'ctx');
  await fsp.mkdir(ctx);
  await mkTree(ctx, {
    'a.txt': 'A',
    'b.txt': 'B',
    'run.sh': { content: '#!/bin/sh\n', mode: 0o755 },
    'dir/x': 'X',
    'dir/sub/y': 'Y',
    'dir/inner-link': { link: '../a.txt' },
    'dir/abs-link': { link: '/etc/passwd' },
    'docs/readme.md': 'md',
    'docs/guide.txt': 'guide',
    'a/b/c.txt': 'C',
    'x/y/one.txt': '1',
    'x/y/two.txt': '2',
    'x/y/skip.md': 's',
    'link-to-a': { link: 'a.txt' },
    'link-to-dir': { link: 'dir' },
    'escape-rel': { link: '../../../../etc/passwd' },
    'escape-abs': { link: '/etc/passwd' },
    'secret.key': 'k',
  });
  await fsp.utimes(path.join(ctx, 'a.txt'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
  await fsp.chown(path.join(ctx, 'b.txt'), 1234, 5678);
});

after(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});

describe('copyFiles from the build context', () => {
  it('copies a file to a file path, keeping mode and mtime, owned by root', async () => {
    const root = await freshRoot();
    const r = await copyFiles(req(root, ['a.txt'], '/b.txt'));
    assert.equal(r.copied, 1);
    assert.equal(await read(path.join(root, 'b.txt')), 'A');
    const st = await fsp.stat(path.join(root, 'b.txt'));
    assert.equal(st.mtime.toISOString(), '2020-01-02T03:04:05.000Z');
    assert.equal(st.mode & 0o777, 0o644);
    await copyFiles(req(root, ['b.txt'], '/owned'));
    const st2 = await fsp.stat(path.join(root, 'owned'));
    assert.deepEqual([st2.uid, st2.gid], [0, 0], 'context files land as 0:0 whatever the host owner');
    await copyFiles(req(root, ['run.sh'], '/bin/run'));
    assert.equal(await modeOf(path.join(root, 'bin/run')), 0o755);
    assert.equal(await modeOf(path.join(root, 'bin')), 0o755);
  });

  it('copies into a dir when dest ends with / or is an existing dir, creating parents', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, ['a.txt'], '/deep/er/'));
    assert.equal(await read(path.join(root, 'deep/er/a.txt')), 'A');
    await fsp.mkdir(path.join(root, 'existing'));
    await copyFiles(req(root, ['b.txt'], '/existing'));
    assert.equal(await read(path.join(root, 'existing/b.txt')), 'B');
    await copyFiles(req(root, ['a.txt'], 'rel/', { workdir: '/work' }));
    assert.equal(await read(path.join(root, 'work/rel/a.txt')), 'A');
    await copyFiles(req(root, ['b.txt'], '.', { workdir: '/wd' }));
    assert.equal(await read(path.join(root, 'wd/b.txt')), 'B');
  });

  it('copies the contents of a source dir, not the dir itself', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, ['dir'], '/out'));
    assert.deepEqual(await listTree(path.join(root, 'out')), ['abs-link', 'inner-link', 'sub/', 'sub/y', 'x']);
    assert.equal(await fsp.readlink(path.join(root, 'out/inner-link')), '../a.txt', 'symlinks inside a dir stay symlinks');
    assert.equal(await fsp.readlink(path.join(root, 'out/abs-link')), '/etc/passwd');
    const st = await fsp.stat(path.join(root, 'out'));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [0, 0, 0o755]);
  });

  it('follows a symlink named as the source', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, ['link-to-a'], '/'));
    const st = await fsp.lstat(path.join(root, 'link-to-a'));
    assert.ok(st.isFile());
    assert.equal(await read(path.join(root, 'link-to-a')), 'A');
    await copyFiles(req(root, ['link-to-dir/x'], '/via'));
    assert.equal(await read(path.join(root, 'via')), 'X');
    await copyFiles(req(root, ['link-to-dir'], '/ld/'));
    assert.equal(await read(path.join(root, 'ld/sub/y')), 'Y');
  });

  it('expands wildcards; one match may go to a file path', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, ['*.txt'], '/w/'));
    assert.deepEqual(await listTree(path.join(root, 'w')), ['a.txt', 'b.txt']);
    await copyFiles(req(root, ['r?n.sh'], '/single'));
    assert.equal(await read(path.join(root, 'single')), '#!/bin/sh\n');
    await copyFiles(req(root, ['x/*/[ot]*.txt'], '/cls/'));
    assert.deepEqual(await listTree(path.join(root, 'cls')), ['one.txt', 'two.txt']);
    const r = await copyFiles(req(root, ['nomatch*'], '/none/'));
    assert.equal(r.copied, 0, 'a wildcard matching nothing is not an error (BuildKit)');
    await rejectsCode(copyFiles(req(root, ['nodir/*.txt'], '/none/')), 'COPY_NO_MATCH', /"\/nodir": not found/);
  });

  it('refuses several sources into a non-directory destination', async () => {
    const root = await freshRoot();
    await rejectsCode(copyFiles(req(root, ['a.txt', 'b.txt'], '/dest')), 'COPY_DEST_NOT_DIR', /must be a directory and end with a \//);
    await rejectsCode(copyFiles(req(root, ['*.txt'], '/dest')), 'COPY_DEST_NOT_DIR');
    await rejectsCode(copyFiles(req(root, ['a.txt'], '/d', { heredocs: [{ name: 'h', content: 'x' }] })), 'COPY_DEST_NOT_DIR');
    assert.equal(await exists(path.join(root, 'dest')), false);
    await fsp.mkdir(path.join(root, 'isdir'));
    await copyFiles(req(root, ['a.txt', 'b.txt'], '/isdir'));
    assert.deepEqual(await listTree(path.join(root, 'isdir')), ['a.txt', 'b.txt']);
  });

  it('reports a missing source like BuildKit, with a hint', async () => {
    const root = await freshRoot();
    await assert.rejects(copyFiles(req(root, ['missing.txt'], '/')), (e: unknown) => {
      assert.ok(isStrataError(e));
      assert.equal(e.code, 'COPY_NO_MATCH');
      assert.match(e.message, /"\/missing\.txt": not found/);
      assert.match(e.hint ?? '', /\.dockerignore/);
      return true;
    });
  });

  it('rejects sources outside the context: ../x and escaping symlinks', async () => {
    const root = await freshRoot();
    await rejectsCode(copyFiles(req(root, ['../x'], '/')), 'COPY_OUTSIDE_CONTEXT', /outside the build context/);
    await rejectsCode(copyFiles(req(root, ['dir/../../x'], '/')), 'COPY_OUTSIDE_CONTEXT');
    await rejectsCode(copyFiles(req(root, ['escape-rel'], '/')), 'COPY_OUTSIDE_CONTEXT', /escape-rel/);
    await rejectsCode(copyFiles(req(root, ['escape-abs'], '/')), 'COPY_OUTSIDE_CONTEXT', /\/etc\/passwd/);
    assert.deepEqual(await listTree(root), []);
  });

  it('treats an absolute source as relative to the context root', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, ['/a.txt', '/dir/sub/'], '/abs/'));
    assert.deepEqual(await listTree(path.join(root, 'abs')), ['a.txt', 'y']);
  });

  it('resolves destination symlinks inside the rootfs, never on the host', async () => {
    const root = await freshRoot();
    const name = `strata-test-${process.pid}-${Date.now()}`;
    await fsp.mkdir(path.join(root, 'opt', name), { recursive: true });
    await fsp.symlink(`/opt/${name}`, path.join(root, 'app'));
    await copyFiles(req(root, ['a.txt'], '/app/'));
    await copyFiles(req(root, ['dir'], '/app/tree'));
    assert.equal(await read(path.join(root, 'opt', name, 'a.txt')), 'A');
    assert.equal(await read(path.join(root, 'opt', name, 'tree/x')), 'X');
    assert.equal(await exists(`/opt/${name}`), false);
    assert.ok((await fsp.lstat(path.join(root, 'app'))).isSymbolicLink(), 'the link itself is kept');
    // `..` in a link target cannot climb out of the rootfs either.
    await fsp.symlink('../../../../../../tmp-escape-' + name, path.join(root, 'up'));
    await copyFiles(req(root, ['b.txt'], '/up/'));
    assert.equal(await read(path.join(root, 'tmp-escape-' + name, 'b.txt')), 'B');
    assert.equal(await exists('/tmp-escape-' + name), false);
  });

  it('applies --chown to copied files and created dirs, not to existing ones', async () => {
    const root = await freshRoot();
    await fsp.mkdir(path.join(root, 'pre'));
    await copyFiles(req(root, ['dir'], '/pre/new/', { chown: { uid: 1000, gid: 1001 } }));
    for (const p of ['pre/new', 'pre/new/x', 'pre/new/sub', 'pre/new/sub/y', 'pre/new/inner-link']) {
      const st = await fsp.lstat(path.join(root, p));
      assert.deepEqual([st.uid, st.gid], [1000, 1001], p);
    }
    const pre = await fsp.stat(path.join(root, 'pre'));
    assert.deepEqual([pre.uid, pre.gid], [0, 0]);
  });

  it('applies --chmod, octal and symbolic, to files and dirs', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, ['dir'], '/oct', { chmod: '0750' }));
    assert.equal(await modeOf(path.join(root, 'oct/x')), 0o750);
    assert.equal(await modeOf(path.join(root, 'oct/sub')), 0o750);
    assert.equal(await modeOf(path.join(root, 'oct')), 0o750, 'the created destination dir gets the octal mode');
    await copyFiles(req(root, ['a.txt', 'dir'], '/sym/', { chmod: 'u+x,g-w,o=' }));
    assert.equal(await modeOf(path.join(root, 'sym/a.txt')), 0o740);
    assert.equal(await modeOf(path.join(root, 'sym/sub')), 0o750);
    assert.equal(await modeOf(path.join(root, 'sym')), 0o755, 'created parents keep 0755 with a symbolic mode');
    await copyFiles(req(root, ['a.txt', 'run.sh', 'dir'], '/x/', { chmod: 'go-r,+X' }));
    assert.equal(await modeOf(path.join(root, 'x/a.txt')), 0o600);
    assert.equal(await modeOf(path.join(root, 'x/run.sh')), 0o711);
    assert.equal(await modeOf(path.join(root, 'x/sub')), 0o711);
    await copyFiles(req(root, ['a.txt'], '/s', { chmod: '4755' }));
    assert.equal(await modeOf(path.join(root, 's')), 0o4755);
    await rejectsCode(copyFiles(req(root, ['a.txt'], '/bad', { chmod: '0899' })), 'COPY_BAD_CHMOD', /it should be octal/);
    await rejectsCode(copyFiles(req(root, ['a.txt'], '/bad', { chmod: 'u+q' })), 'COPY_BAD_CHMOD');
  });

  it('honours the ignore callback: ignored files do not exist', async () => {
    const root = await freshRoot();
    const ignore = (rel: string): boolean => rel === 'secret.key' || rel.endsWith('.md');
    await copyFiles(req(root, ['.'], '/all/', { ignore }));
    const all = await listTree(path.join(root, 'all'));
    assert.ok(all.includes('a.txt'));
    assert.ok(!all.includes('secret.key'));
    assert.ok(!all.includes('docs/readme.md'));
    assert.ok(all.includes('docs/guide.txt'));
    await assert.rejects(copyFiles(req(root, ['secret.key'], '/k', { ignore })), (e: unknown) => {
      assert.ok(isStrataError(e));
      assert.equal(e.code, 'COPY_NO_MATCH');
      assert.match(e.hint ?? '', /\.dockerignore excludes it/);
      return true;
    });
  });

  it('walks an ignored dir for re-included files when told to', async () => {
    const root = await freshRoot();
    const ignore = (rel: string): boolean => rel === 'docs' || (rel.startsWith('docs/') && rel !== 'docs/guide.txt');
    await copyFiles(req(root, ['.'], '/d1/', { ignore, ignoreMayReinclude: true }));
    assert.deepEqual((await listTree(path.join(root, 'd1'))).filter((p) => p.startsWith('docs')), ['docs/', 'docs/guide.txt']);
  });

  it('works with the .dockerignore PatternMatcher, exceptions included', async () => {
    const root = await freshRoot();
    const m = new PatternMatcher(parseDockerignore('docs\n!docs/guide.txt\n*.key\n'));
    await copyFiles(req(root, ['.'], '/di/', { ignore: (rel) => m.matches(rel), ignoreMayReinclude: (rel) => m.mayReinclude(rel) }));
    const tree = await listTree(path.join(root, 'di'));
    assert.ok(tree.includes('docs/guide.txt'));
    assert.ok(!tree.includes('docs/readme.md'));
    assert.ok(!tree.includes('secret.key'));
  });

  it('applies --exclude relative to each source', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, ['x', 'docs'], '/ex/', { excludes: ['**/*.md', 'y/two.txt'] }));
    assert.deepEqual(await listTree(path.join(root, 'ex')), ['guide.txt', 'y/', 'y/one.txt']);
    await copyFiles(req(root, ['dir'], '/ex2/', { excludes: ['sub', '!sub/y'] }));
    assert.ok((await listTree(path.join(root, 'ex2'))).includes('sub/y'), 'a ! exception re-includes below an excluded dir');
  });

  it('keeps parent directories with --parents, and the /./ pivot', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, ['./a/b/c.txt', 'x/y/one.txt'], '/dst/', { parents: true }));
    assert.deepEqual(await listTree(path.join(root, 'dst')), ['a/', 'a/b/', 'a/b/c.txt', 'x/', 'x/y/', 'x/y/one.txt']);
    await copyFiles(req(root, ['./x/./y/*.txt'], '/piv/', { parents: true }));
    assert.deepEqual(await listTree(path.join(root, 'piv')), ['y/', 'y/one.txt', 'y/two.txt']);
    await copyFiles(req(root, ['x/**/*.md'], '/glob/', { parents: true }));
    assert.deepEqual(await listTree(path.join(root, 'glob')), ['x/', 'x/y/', 'x/y/skip.md']);
    await rejectsCode(copyFiles(req(root, ['a/nope.txt'], '/p/', { parents: true })), 'COPY_NO_MATCH', /"\/a\/nope\.txt": not found/);
  });

  it('writes heredoc files', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, [], '/etc/', { heredocs: [{ name: 'motd', content: 'hello\n' }] }));
    assert.equal(await read(path.join(root, 'etc/motd')), 'hello\n');
    assert.equal(await modeOf(path.join(root, 'etc/motd')), 0o644);
    await copyFiles(req(root, ['<<EOF'], '/script.sh', { heredocs: [{ name: 'EOF', content: 'echo hi\n' }], chmod: '755' }));
    assert.equal(await read(path.join(root, 'script.sh')), 'echo hi\n');
    assert.equal(await modeOf(path.join(root, 'script.sh')), 0o755);
  });

  it('refuses to put a file where a directory is', async () => {
    const root = await freshRoot();
    await fsp.mkdir(path.join(root, 'd/a.txt'), { recursive: true });
    await rejectsCode(copyFiles(req(root, ['a.txt'], '/d/')), 'COPY_DEST_CONFLICT');
    await fsp.writeFile(path.join(root, 'file'), 'f');
    await rejectsCode(copyFiles(req(root, ['dir'], '/file')), 'COPY_DEST_CONFLICT', /non-directory/);
  });

  it('replaces an existing file and merges into existing dirs', async () => {
    const root = await freshRoot();
    await mkTree(root, { 'out/x': 'old', 'out/keep': 'k', 'out/sub/y': 'old' });
    await copyFiles(req(root, ['dir'], '/out'));
    assert.equal(await read(path.join(root, 'out/x')), 'X');
    assert.equal(await read(path.join(root, 'out/sub/y')), 'Y');
    assert.equal(await read(path.join(root, 'out/keep')), 'k');
  });
});

describe('copyFiles from a rootfs (--from)', () => {
  let src: string;
  before(async () => {
    src = path.join(work, 'stage');
    await fsp.mkdir(src);
    await mkTree(src, { 'out/sub/foo': 'data', 'bin/tool': { content: 'bin', mode: 0o4755 }, 'h/one': 'same' });
    await fsp.symlink('/out/sub', path.join(src, 'sub'));
    await fsp.symlink('out/sub', path.join(src, 'sub2'));
    await fsp.symlink('/etc/passwd', path.join(src, 'passwd-link'));
    await fsp.chown(path.join(src, 'out/sub/foo'), 100, 200);
    await fsp.chown(path.join(src, 'out/sub'), 101, 201);
    await fsp.link(path.join(src, 'h/one'), path.join(src, 'h/two'));
  });

  it('resolves symlinks inside the rootfs and keeps owners', async () => {
    const root = await freshRoot();
    await copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['/sub/foo'], dest: '.', destRoot: root, workdir: '/' });
    await copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['/sub2/foo'], dest: 'bar', destRoot: root, workdir: '/' });
    assert.equal(await read(path.join(root, 'foo')), 'data');
    assert.equal(await read(path.join(root, 'bar')), 'data');
    const st = await fsp.stat(path.join(root, 'foo'));
    assert.deepEqual([st.uid, st.gid], [100, 200]);
    await copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['/out'], dest: '/o', destRoot: root, workdir: '/' });
    const sub = await fsp.stat(path.join(root, 'o/sub'));
    assert.deepEqual([sub.uid, sub.gid], [101, 201]);
    const top = await fsp.stat(path.join(root, 'o'));
    assert.deepEqual([top.uid, top.gid], [0, 0], 'the destination dir itself is created by root');
    assert.equal(await modeOf(path.join(src, 'bin/tool')), 0o4755);
    await copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['/bin/tool'], dest: '/t', destRoot: root, workdir: '/' });
    assert.equal(await modeOf(path.join(root, 't')), 0o4755);
  });

  it('clamps a link to / at the rootfs root instead of reading the host', async () => {
    const root = await freshRoot();
    await assert.rejects(
      copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['passwd-link'], dest: '/p', destRoot: root, workdir: '/' }),
      (e: unknown) => isStrataError(e) && e.code === 'COPY_NO_MATCH',
    );
    await copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['../../out/sub/foo'], dest: '/clamped', destRoot: root, workdir: '/' });
    assert.equal(await read(path.join(root, 'clamped')), 'data');
  });

  it('recreates fifos and device nodes', async () => {
    const dev = path.join(src, 'dev');
    await fsp.mkdir(dev);
    execFileSync('mkfifo', [path.join(dev, 'pipe')]);
    execFileSync('mknod', [path.join(dev, 'null'), 'c', '1', '3']);
    const root = await freshRoot();
    await copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['/dev'], dest: '/dev', destRoot: root, workdir: '/' });
    assert.ok((await fsp.lstat(path.join(root, 'dev/pipe'))).isFIFO());
    const nul = await fsp.lstat(path.join(root, 'dev/null'));
    assert.ok(nul.isCharacterDevice());
    assert.equal(nul.rdev, (await fsp.lstat(path.join(dev, 'null'))).rdev);
    await fsp.rm(dev, { recursive: true });
  });

  it('carries extended attributes (capabilities and the like)', async () => {
    const f = path.join(src, 'bin/tool');
    setAttributeSync(f, 'user.strata.test', 'v1');
    const root = await freshRoot();
    await copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['/bin/tool'], dest: '/x', destRoot: root, workdir: '/' });
    assert.equal(getAttributeSync(path.join(root, 'x'), 'user.strata.test').toString(), 'v1');
  });

  it('keeps hard links', async () => {
    const root = await freshRoot();
    await copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['/h'], dest: '/h', destRoot: root, workdir: '/' });
    const a = await fsp.stat(path.join(root, 'h/one'));
    const b = await fsp.stat(path.join(root, 'h/two'));
    assert.equal(a.ino, b.ino);
    assert.equal(a.nlink, 2);
  });
});

describe('ensureWorkdir', () => {
  it('creates the dir through symlinks inside the rootfs and reports whether it did', async () => {
    const root = await freshRoot();
    await fsp.mkdir(path.join(root, 'real'));
    await fsp.symlink('/real', path.join(root, 'w'));
    assert.equal(await ensureWorkdir(root, '/w/app/src', { uid: 10, gid: 20 }), true);
    const st = await fsp.stat(path.join(root, 'real/app/src'));
    assert.ok(st.isDirectory());
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [10, 20, 0o755]);
    assert.equal((await fsp.stat(path.join(root, 'real/app'))).uid, 10);
    assert.equal(await ensureWorkdir(root, '/w/app/src'), false);
    assert.equal(await ensureWorkdir(root, '/'), false);
    await fsp.writeFile(path.join(root, 'f'), '');
    await assert.rejects(ensureWorkdir(root, '/f'), (e: unknown) => isStrataError(e) && e.code === 'COPY_DEST_CONFLICT');
  });
});

describe('--exclude pattern depth', () => {
  it('matches `*.md` only at the top of each source, like BuildKit', async () => {
    const root = await freshRoot();
    await copyFiles(req(root, ['x'], '/e/', { excludes: ['*.md'] }));
    assert.ok((await listTree(path.join(root, 'e'))).includes('y/skip.md'));
  });
});
