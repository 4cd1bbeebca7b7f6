// Big copies create their files on worker threads (src/fileops/copy-workers.ts): the result must be
// the same as the inline path's, entry by entry, and a failure must come back as the fs error.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, constants } from 'node:fs';
import * as path from 'node:path';
import { getAttributeSync, setAttributeSync } from 'fs-xattr';
import { copyFiles } from '../../src/fileops/copy.js';
import { runFileJobs } from '../../src/fileops/copy-workers.js';
import type { FileOpJob } from '../../src/fileops/file-jobs.js';
import { listTree, tmpdir } from './helpers.js';

let work: string;
let src: string;
const MODES = [0o644, 0o600, 0o755, 0o777, 0o4755, 0o2711, 0o1777, 0o400];
const FILES = 1500;

before(async () => {
  work = await tmpdir('strata-batch-');
  src = path.join(work, 'src');
  for (let i = 0; i < FILES; i++) {
    const dir = path.join(src, `d${i % 17}`, `e${i % 5}`);
    await fsp.mkdir(dir, { recursive: true });
    const f = path.join(dir, `f${i}.txt`);
    await fsp.writeFile(f, `file ${i}\n`.repeat(1 + (i % 7)));
    await fsp.chmod(f, MODES[i % MODES.length]!);
    await fsp.chown(f, 1000 + (i % 3), 2000 + (i % 4));
    // atime ahead of mtime and ctime (utimes sets ctime to now): a read (relatime) leaves it.
    await fsp.utimes(f, new Date(Date.now() + 3_600_000 + i), new Date(Date.UTC(2021, 0, 1 + (i % 28), 1, 2, 3, i % 1000)));
    if (i % 50 === 0) {
      await fsp.symlink(`f${i}.txt`, path.join(dir, `l${i}`));
      await fsp.lutimes(path.join(dir, `l${i}`), new Date(Date.now() + 3_600_000), new Date(Date.UTC(2020, 5, 6)));
    }
    if (i % 100 === 0) await fsp.link(f, path.join(dir, `h${i}`));
  }
  // Bigger than the in-memory copy buffer: goes through the kernel copy.
  await fsp.writeFile(path.join(src, 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
  await fsp.chmod(path.join(src, 'big.bin'), 0o640);
  await fsp.utimes(path.join(src, 'big.bin'), new Date(Date.now() + 3_600_000), new Date('2022-02-02T02:02:02Z'));
  const tagged = path.join(src, 'd0/e0/f0.txt');
  const st = await fsp.stat(tagged);
  setAttributeSync(tagged, 'user.strata.batch', 'x1');
  await fsp.utimes(tagged, st.atime, st.mtime);
});

after(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});

/** Type, mode, owner, times and content of every entry; all stats come before any read (reads move atimes). */
async function meta(root: string): Promise<Map<string, string>> {
  const rels = await listTree(root);
  const stats = await Promise.all(rels.map((rel) => fsp.lstat(path.join(root, rel))));
  const out = new Map<string, string>();
  for (const [i, rel] of rels.entries()) {
    const p = path.join(root, rel);
    const st = stats[i]!;
    const content = st.isFile() ? (await fsp.readFile(p)).toString('base64').slice(0, 40) + st.size : st.isSymbolicLink() ? await fsp.readlink(p) : '';
    const times = st.isDirectory() ? '' : `${Math.floor(st.mtimeMs)}:${Math.floor(st.atimeMs)}`;
    out.set(rel, `${(st.mode & 0o170000).toString(8)}:${(st.mode & 0o7777).toString(8)}:${st.uid}:${st.gid}:${times}:${content}`);
  }
  return out;
}

describe('copies of many files (worker threads)', () => {
  it('keep content, mode (special bits too), times and owners of a rootfs source, links and hard links', async () => {
    const dest = path.join(work, 'rootfs-copy');
    await fsp.mkdir(dest);
    const r = await copyFiles({ srcRoot: src, srcIsRootfs: true, sources: ['/'], dest: '/out/', destRoot: dest, workdir: '/' });
    assert.ok(r.copied > FILES);
    const want = await meta(src);
    const got = await meta(path.join(dest, 'out'));
    assert.deepEqual([...got.keys()], [...want.keys()]);
    for (const [k, v] of want) assert.equal(got.get(k), v, k);
    const a = await fsp.stat(path.join(dest, 'out/d0/e0/f0.txt'));
    const b = await fsp.stat(path.join(dest, 'out/d0/e0/h0'));
    assert.equal(a.ino, b.ino, 'hard links stay linked');
    assert.equal(getAttributeSync(path.join(dest, 'out/d0/e0/f0.txt'), 'user.strata.batch').toString(), 'x1');
  });

  it('give context files to root (or --chown) and apply --chmod', async () => {
    const dest = path.join(work, 'ctx-copy');
    await fsp.mkdir(dest);
    await copyFiles({ srcRoot: src, srcIsRootfs: false, sources: ['d1'], dest: '/a/', destRoot: dest, workdir: '/' });
    await copyFiles({ srcRoot: src, srcIsRootfs: false, sources: ['d2'], dest: '/b/', destRoot: dest, workdir: '/', chown: { uid: 7, gid: 8 }, chmod: '0640' });
    const plain = await meta(path.join(src, 'd1'));
    for (const [rel, v] of await meta(path.join(dest, 'a'))) {
      const [type, mode, , , ...rest] = v.split(':');
      const [wtype, wmode, , , ...wrest] = plain.get(rel)!.split(':');
      assert.deepEqual([type, mode, ...rest], [wtype, wmode, ...wrest], rel);
      const st = await fsp.lstat(path.join(dest, 'a', rel));
      assert.deepEqual([st.uid, st.gid], [0, 0], rel);
    }
    for (const rel of await listTree(path.join(dest, 'b'))) {
      const st = await fsp.lstat(path.join(dest, 'b', rel));
      assert.deepEqual([st.uid, st.gid], [7, 8], rel);
      if (st.isFile()) assert.equal(st.mode & 0o7777, 0o640, rel);
    }
  });

  it('keep modes in a destination dir whose default ACL would narrow them', async () => {
    const dest = path.join(work, 'acl');
    await fsp.mkdir(path.join(dest, 'm'), { recursive: true });
    // system.posix_acl_default = user::rwx group::--- other::--- (version 2, three entries).
    const acl = Buffer.alloc(4 + 3 * 8);
    acl.writeUInt32LE(2, 0);
    [[0x01, 7], [0x04, 0], [0x20, 0]].forEach(([tag, perm], i) => {
      acl.writeUInt16LE(tag!, 4 + i * 8);
      acl.writeUInt16LE(perm!, 6 + i * 8);
      acl.writeUInt32LE(0xffffffff, 8 + i * 8);
    });
    setAttributeSync(path.join(dest, 'm'), 'system.posix_acl_default', acl);
    await copyFiles({ srcRoot: src, srcIsRootfs: false, sources: ['d3'], dest: '/m/', destRoot: dest, workdir: '/' });
    const want = await meta(path.join(src, 'd3'));
    for (const [rel, v] of await meta(path.join(dest, 'm'))) {
      if (v.startsWith('100000:')) assert.equal(v.split(':')[1], want.get(rel)!.split(':')[1], rel);
    }
  });

  it('replaces existing files and fills existing dirs', async () => {
    const dest = path.join(work, 'merge');
    await fsp.mkdir(path.join(dest, 'm/e1'), { recursive: true });
    await fsp.writeFile(path.join(dest, 'm/e1/f6.txt'), 'old');
    await fsp.writeFile(path.join(dest, 'm/keep'), 'kept');
    await copyFiles({ srcRoot: src, srcIsRootfs: false, sources: ['d6'], dest: '/m', destRoot: dest, workdir: '/' });
    assert.equal(await fsp.readFile(path.join(dest, 'm/e1/f6.txt'), 'utf8'), await fsp.readFile(path.join(src, 'd6/e1/f6.txt'), 'utf8'));
    assert.equal(await fsp.readFile(path.join(dest, 'm/keep'), 'utf8'), 'kept');
    assert.deepEqual((await listTree(path.join(dest, 'm'))).filter((p) => p !== 'keep'), await listTree(path.join(src, 'd6')));
  });

  it('report a failing file as the fs error, after the other jobs stopped', async () => {
    const out = path.join(work, 'jobs');
    await fsp.mkdir(out);
    const jobs: FileOpJob[] = [];
    for (let i = 0; i < 1200; i++) {
      jobs.push({ kind: 'file', src: path.join(src, 'd0/e0/f0.txt'), dst: path.join(out, `j${i}`), size: 7, mode: 0o644, atime: 1, mtime: 2 });
    }
    jobs[900] = { ...jobs[900]!, src: path.join(work, 'missing') } as FileOpJob;
    await assert.rejects(runFileJobs(jobs), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.path === path.join(work, 'missing'));
    // A target that exists is never written through (O_EXCL).
    await fsp.symlink('/etc/hostname', path.join(out, 'planted'));
    const many = Array.from({ length: 300 }, (_, i): FileOpJob => ({ kind: 'symlink', target: 'x', dst: path.join(out, `s${i}`), atime: 1, mtime: 2 }));
    many.push({ kind: 'file', src: path.join(src, 'big.bin'), dst: path.join(out, 'planted'), size: 10, mode: 0o644, atime: 1, mtime: 2 });
    await assert.rejects(runFileJobs(many), (e: NodeJS.ErrnoException) => e.code === 'EEXIST');
    assert.equal((await fsp.lstat(path.join(out, 'planted'))).isSymbolicLink(), true);
    assert.equal((await fsp.lstat(path.join(out, 's299'))).mtimeMs, 2000);
    await fsp.access(path.join(out, 'j0'), constants.R_OK);
  });
});
