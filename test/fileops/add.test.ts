import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { copyFiles, type CopyRequest } from '../../src/fileops/copy.js';
import { detectArchive } from '../../src/fileops/archive.js';
import { downloadUrl } from '../../src/fileops/http.js';
import { isStrataError } from '../../src/errors.js';
import { exists, listTree, mkTree, modeOf, read, tmpdir } from './helpers.js';

let work: string;
let ctx: string;
let n = 0;

async function freshRoot(): Promise<string> {
  const d = path.join(work, `root${n++}`);
  await fsp.mkdir(d);
  return d;
}

function add(destRoot: string, sources: string[], dest: string, extra: Partial<CopyRequest> = {}): CopyRequest {
  return { srcRoot: ctx, srcIsRootfs: false, sources, dest, destRoot, workdir: '/', isAdd: true, ...extra };
}

async function packTar(entries: { header: Partial<tar.Header> & { name: string }; body?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) pack.entry(e.header as tar.Header, e.body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

before(async () => {
  work = await tmpdir();
  ctx = path.join(work, 'ctx');
  const payload = path.join(work, 'payload');
  await mkTree(payload, { 'top.txt': 'top', 'pkg/bin/tool': { content: 'tool', mode: 0o755 }, 'pkg/lib/data': 'data' });
  await fsp.symlink('bin/tool', path.join(payload, 'pkg/tool-link'));
  await fsp.mkdir(ctx);
  execFileSync('tar', ['-czf', path.join(ctx, 'a.tar.gz'), '--owner=1000', '--group=1000', '-C', payload, '.']);
  execFileSync('tar', ['-cJf', path.join(ctx, 'a.tar.xz'), '-C', payload, 'pkg']);
  execFileSync('tar', ['-cjf', path.join(ctx, 'a.tar.bz2'), '-C', payload, 'top.txt']);
  execFileSync('tar', ['-cf', path.join(ctx, 'plain.tar'), '-C', payload, 'top.txt']);
  execFileSync('tar', ['-czf', path.join(ctx, 'misnamed.bin'), '-C', payload, 'top.txt']);
  await fsp.writeFile(path.join(ctx, 'fake.tar.gz'), 'not an archive at all');
  await fsp.writeFile(
    path.join(ctx, 'evil.tar'),
    await packTar([{ header: { name: '../../escaped.txt', type: 'file' }, body: 'evil' }]),
  );
  await fsp.writeFile(
    path.join(ctx, 'linky.tar'),
    await packTar([
      { header: { name: 'root-link', type: 'symlink', linkname: '/' } },
      { header: { name: `root-link/strata-add-${process.pid}.txt`, type: 'file', mode: 0o644 }, body: 'inside' },
    ]),
  );
  await fsp.writeFile(
    path.join(ctx, 'badlink.tar'),
    await packTar([{ header: { name: 'a/up', type: 'symlink', linkname: '../../../etc' } }]),
  );
});

after(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});

describe('ADD of local archives', () => {
  it('recognises archives by content, not name', async () => {
    assert.equal(await detectArchive(path.join(ctx, 'a.tar.gz')), 'gzip');
    assert.equal(await detectArchive(path.join(ctx, 'a.tar.xz')), 'xz');
    assert.equal(await detectArchive(path.join(ctx, 'a.tar.bz2')), 'bzip2');
    assert.equal(await detectArchive(path.join(ctx, 'plain.tar')), 'none');
    assert.equal(await detectArchive(path.join(ctx, 'misnamed.bin')), 'gzip');
    assert.equal(await detectArchive(path.join(ctx, 'fake.tar.gz')), undefined);
  });

  it('extracts tar.gz with modes, symlinks and the archive owners', async () => {
    const root = await freshRoot();
    const r = await copyFiles(add(root, ['a.tar.gz'], '/opt/x'));
    assert.ok(r.copied >= 5);
    assert.equal(await read(path.join(root, 'opt/x/top.txt')), 'top');
    assert.equal(await modeOf(path.join(root, 'opt/x/pkg/bin/tool')), 0o755);
    assert.equal(await fsp.readlink(path.join(root, 'opt/x/pkg/tool-link')), 'bin/tool');
    const st = await fsp.stat(path.join(root, 'opt/x/top.txt'));
    assert.deepEqual([st.uid, st.gid], [1000, 1000]);
  });

  it('extracts tar.xz and tar.bz2 and plain tar; --chown overrides owners', async () => {
    const root = await freshRoot();
    await copyFiles(add(root, ['a.tar.xz', 'a.tar.bz2', 'plain.tar'], '/x/', { chown: { uid: 7, gid: 8 } }));
    assert.deepEqual(await listTree(path.join(root, 'x')), ['pkg/', 'pkg/bin/', 'pkg/bin/tool', 'pkg/lib/', 'pkg/lib/data', 'pkg/tool-link', 'top.txt']);
    const st = await fsp.lstat(path.join(root, 'x/pkg/lib/data'));
    assert.deepEqual([st.uid, st.gid], [7, 8]);
  });

  it('copies a non-archive as a file, and an archive as-is under COPY or --unpack=false', async () => {
    const root = await freshRoot();
    await copyFiles(add(root, ['fake.tar.gz'], '/f/'));
    assert.equal(await read(path.join(root, 'f/fake.tar.gz')), 'not an archive at all');
    await copyFiles({ ...add(root, ['a.tar.gz'], '/c/'), isAdd: false });
    assert.ok((await fsp.stat(path.join(root, 'c/a.tar.gz'))).isFile());
    await copyFiles(add(root, ['a.tar.gz'], '/u/', { unpack: false }));
    assert.ok((await fsp.stat(path.join(root, 'u/a.tar.gz'))).isFile());
  });

  it('refuses entries that climb out of the destination', async () => {
    const root = await freshRoot();
    await assert.rejects(copyFiles(add(root, ['evil.tar'], '/d/')), (e: unknown) => isStrataError(e) && e.code === 'ADD_UNSAFE_ARCHIVE');
    assert.equal(await exists(path.join(root, 'escaped.txt')), false);
    assert.equal(await exists(path.join(work, 'escaped.txt')), false);
    await assert.rejects(copyFiles(add(root, ['badlink.tar'], '/b/')), (e: unknown) => isStrataError(e) && e.code === 'ADD_UNSAFE_ARCHIVE');
  });

  it('resolves links met during extraction inside the destination', async () => {
    const root = await freshRoot();
    await copyFiles(add(root, ['linky.tar'], '/dst/'));
    assert.equal(await read(path.join(root, `dst/strata-add-${process.pid}.txt`)), 'inside');
    assert.equal(await exists(`/strata-add-${process.pid}.txt`), false);
  });
});

describe('ADD of a URL', () => {
  let server: http.Server;
  let base: string;
  const body = 'downloaded content\n';
  const sha = 'sha256:' + createHash('sha256').update(body).digest('hex');
  const lastModified = 'Wed, 21 Oct 2015 07:28:00 GMT';

  before(async () => {
    server = http.createServer((rq, rs) => {
      if (rq.url === '/files/tool.txt' || rq.url === '/') {
        rs.writeHead(200, { 'Last-Modified': lastModified, 'Content-Type': 'text/plain' });
        rs.end(body);
      } else {
        rs.writeHead(404);
        rs.end('nope');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('names the file after the URL path, mode 0600, mtime from Last-Modified', async () => {
    const root = await freshRoot();
    await copyFiles(add(root, [`${base}/files/tool.txt`], '/dl/'));
    const p = path.join(root, 'dl/tool.txt');
    assert.equal(await read(p), body);
    assert.equal(await modeOf(p), 0o600);
    assert.equal((await fsp.stat(p)).mtime.toUTCString(), lastModified);
    await copyFiles(add(root, [`${base}/files/tool.txt`], '/renamed', { chmod: '644' }));
    assert.equal(await read(path.join(root, 'renamed')), body);
    assert.equal(await modeOf(path.join(root, 'renamed')), 0o644);
    await copyFiles(add(root, [`${base}/`], '/n/'));
    assert.equal(await read(path.join(root, 'n/__unnamed__')), body);
  });

  it('verifies --checksum', async () => {
    const root = await freshRoot();
    await copyFiles(add(root, [`${base}/files/tool.txt`], '/ok', { checksum: sha }));
    assert.equal(await read(path.join(root, 'ok')), body);
    const wrong = 'sha256:' + '0'.repeat(64);
    await assert.rejects(copyFiles(add(root, [`${base}/files/tool.txt`], '/bad', { checksum: wrong })), (e: unknown) => {
      assert.ok(isStrataError(e));
      assert.equal(e.code, 'ADD_CHECKSUM_MISMATCH');
      assert.ok(e.message.includes(sha) && e.message.includes(wrong));
      return true;
    });
    assert.equal(await exists(path.join(root, 'bad')), false);
  });

  it('uses a download the caller already made (for the cache key) without fetching again', async () => {
    const root = await freshRoot();
    const dir = await fsp.mkdtemp(path.join(work, 'pre-'));
    const url = `${base}/files/tool.txt`;
    const dl = await downloadUrl(url, dir, sha);
    assert.equal(dl.digest, sha);
    assert.equal(dl.filename, 'tool.txt');
    await fsp.writeFile(dl.file, 'prefetched bytes');
    await copyFiles(add(root, [url], '/pre/', { prefetched: { [url]: dl } }));
    assert.equal(await read(path.join(root, 'pre/tool.txt')), 'prefetched bytes');
    assert.equal(await read(dl.file), 'prefetched bytes', "the caller's file is left alone");
  });

  it('fails clearly on an HTTP error, and COPY refuses URLs', async () => {
    const root = await freshRoot();
    await assert.rejects(copyFiles(add(root, [`${base}/missing`], '/m')), (e: unknown) => isStrataError(e) && e.code === 'ADD_URL_FAILED' && /404/.test(e.message));
    await assert.rejects(copyFiles({ ...add(root, [`${base}/files/tool.txt`], '/m'), isAdd: false }), (e: unknown) => isStrataError(e) && e.code === 'COPY_URL_SOURCE');
  });
});
