// Cache mounts as things a user handles: `from=STAGE,source=PATH` seeding, `strata mount ls`,
// `mount path` (a host process writes there, the next build sees it), export/import round trips
// through a folder and through tars (owners, modes, symlinks kept), `mount rm`, and the errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { controlEnv, expectOk, type ControlEnv } from './support.js';
import { run } from '../build/harness.js';

let c: ControlEnv;
before(async () => {
  c = await controlEnv('mounts');
});
after(() => c.env.cleanup());

/** Every entry below `dir`: type, mode, owner, size, symlink target and file content. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      const rel = relative(dir, p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[rel] = `link ${st.uid}:${st.gid} -> ${readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[rel] = `dir ${mode} ${st.uid}:${st.gid}`;
        walk(p);
      } else out[rel] = `file ${mode} ${st.uid}:${st.gid} ${readFileSync(p, 'utf8')}`;
    }
  };
  walk(dir);
  return out;
}

test('from=STAGE,source=PATH seeds a fresh cache mount with that stage\'s files, owners included', async () => {
  const ctx = c.env.context('seed', {
    Dockerfile: `FROM busybox AS seed
RUN mkdir -p /seed/sub /elsewhere && echo seeded > /seed/sub/f && echo top > /seed/top && echo no > /elsewhere/x \\
 && ln -s sub/f /seed/link && chown -R 1000:1000 /seed/sub && chmod 0640 /seed/top

FROM busybox
ARG N=1
RUN --mount=type=cache,target=/c,id=seeded,from=seed,source=/seed ls -A /c > /listing-$N && echo $N >> /c/runs
`,
  });
  const out = join(c.env.root, 'seed-out');
  await c.ok(ctx, ['-o', `type=local,dest=${out}`]);
  assert.deepEqual(readFileSync(join(out, 'listing-1'), 'utf8').split('\n').filter(Boolean), ['link', 'sub', 'top']);
  assert.deepEqual(tree(c.mountData('seeded')), {
    link: 'link 0:0 -> sub/f',
    runs: 'file 644 0:0 1\n',
    sub: 'dir 755 1000:1000',
    'sub/f': 'file 644 1000:1000 seeded\n',
    top: 'file 640 0:0 top\n',
  });
  // Seeding happens once: the next run finds the mount as the last one left it.
  const out2 = join(c.env.root, 'seed-out2');
  await c.ok(ctx, ['--build-arg', 'N=2', '-o', `type=local,dest=${out2}`]);
  assert.deepEqual(readFileSync(join(out2, 'listing-2'), 'utf8').split('\n').filter(Boolean), ['link', 'runs', 'sub', 'top']);
  assert.equal(readFileSync(join(c.mountData('seeded'), 'runs'), 'utf8'), '1\n2\n');
});

test('mount ls lists each cache mount with its sharing, size, builds and host path', async () => {
  const ctx = c.env.context('ls', {
    Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/var/cache/tool,sharing=locked head -c 20000 /dev/urandom > /var/cache/tool/blob
RUN --mount=type=cache,target=/x,id=tool-b,sharing=private echo b > /x/b
`,
  });
  await c.ok(ctx);
  const list = JSON.parse((await c.cli(['mount', 'ls', '--format', 'json'])).stdout) as Record<string, unknown>[];
  const tool = list.find((m) => m.id === '/var/cache/tool');
  assert.ok(tool, JSON.stringify(list));
  assert.deepEqual(Object.keys(tool).sort(), ['builds', 'created', 'id', 'in_use', 'last_used', 'path', 'sharing', 'size']);
  assert.equal(tool.sharing, 'locked');
  assert.equal(tool.builds, 1);
  assert.equal(tool.in_use, false);
  assert.ok((tool.size as number) >= 20_000);
  assert.equal(tool.path, c.mountData('/var/cache/tool'));
  assert.equal(statSync(join(tool.path as string, 'blob')).size, 20_000);
  assert.equal(list.find((m) => m.id === 'tool-b')?.sharing, 'private');
  const table = (await c.cli(['mount', 'ls'])).stdout;
  assert.match(table, /^\/var\/cache\/tool +locked +\S+ +1 +\S+ +false$/m);
  assert.match(table, /^tool-b +private /m);
});

test('mount path: a host process writes into the mount and the next build sees it; --create makes one', async () => {
  const ctx = c.env.context('path', {
    Dockerfile: `FROM busybox
ARG N=1
RUN --mount=type=cache,target=/c,id=hostshare echo $N > /c/from-build-$N && ls /c > /seen
`,
  });
  await c.ok(ctx);
  const path = (await c.cli(['mount', 'path', 'hostshare'])).stdout.trim();
  assert.equal(path, c.mountData('hostshare'));
  assert.deepEqual(readdirSync(path), ['from-build-1']);
  writeFileSync(join(path, 'from-host'), 'written on the host\n');
  const out = join(c.env.root, 'path-out');
  await c.ok(ctx, ['--build-arg', 'N=2', '-o', `type=local,dest=${out}`]);
  assert.deepEqual(readFileSync(join(out, 'seen'), 'utf8').split('\n').filter(Boolean), ['from-build-1', 'from-build-2', 'from-host']);

  // Prepared ahead of any build: a dev container (or here, the shell) fills it first.
  const missing = await c.env.strata(['mount', 'path', 'prepared']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^error: no cache mount with id "prepared"$/m);
  assert.match(missing.stderr, /^hint: list them with `strata mount ls`/m);
  const created = (await c.cli(['mount', 'path', 'prepared', '--create'])).stdout.trim();
  assert.equal(created, c.mountData('prepared'));
  assert.deepEqual(readdirSync(created), []);
  writeFileSync(join(created, 'wheel'), 'prebuilt\n');
  const ctx2 = c.env.context('prepared', { Dockerfile: 'FROM busybox\nRUN --mount=type=cache,target=/w,id=prepared cat /w/wheel > /got\n' });
  const out2 = join(c.env.root, 'prepared-out');
  await c.ok(ctx2, ['-o', `type=local,dest=${out2}`]);
  assert.equal(readFileSync(join(out2, 'got'), 'utf8'), 'prebuilt\n');
  assert.equal((await c.cli(['mount', 'path', 'prepared', '--create'])).stdout.trim(), created, '--create on an existing mount is its path');
  assert.deepEqual(readdirSync(created), ['wheel']);
});

test('mount export / rm / import round trips through a folder, a .tar and a .tar.gz', async () => {
  const ctx = c.env.context('rt', {
    Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/c,id=rt mkdir -p /c/d/e && echo one > /c/d/e/one && echo two > /c/two \\
 && ln -s d/e/one /c/link && chown -R 1000:1000 /c/d && chmod 0600 /c/two && chmod 0750 /c/d/e
`,
  });
  await c.ok(ctx);
  const original = tree(c.mountData('rt'));
  assert.equal(original['d/e/one'], 'file 644 1000:1000 one\n');
  const dir = join(c.env.root, 'exported');
  const plainTar = join(c.env.root, 'rt.tar');
  const gzTar = join(c.env.root, 'rt.tar.gz');
  assert.match((await c.cli(['mount', 'export', 'rt', dir])).stdout, /^exported cache mount rt to /);
  assert.deepEqual(tree(dir), original);
  await c.cli(['mount', 'export', 'rt', plainTar]);
  await c.cli(['mount', 'export', 'rt', gzTar]);
  assert.equal(readFileSync(gzTar).subarray(0, 2).toString('hex'), '1f8b', '.tar.gz is gzip');
  assert.equal(readFileSync(plainTar).subarray(257, 262).toString(), 'ustar', '.tar is a plain tar');
  const listing = expectOk(await run('tar', ['-tvzf', gzTar, '--numeric-owner']), 'tar -tv').stdout;
  assert.match(listing, /1000\/1000 .* \.\/d\/e\/one$/m);

  for (const src of [dir, plainTar, gzTar]) {
    assert.match((await c.cli(['mount', 'rm', 'rt'])).stdout, /^removed cache mount rt$/m);
    assert.ok(!existsSync(c.mountData('rt')));
    assert.equal((await c.du(['id=rt'])).length, 0);
    assert.match((await c.cli(['mount', 'import', 'rt', src])).stdout, /^imported .* into cache mount rt$/m);
    assert.deepEqual(tree(c.mountData('rt')), original, `import from ${src}`);
  }
  // Importing over an existing mount replaces its contents, and a build uses what was imported.
  const other = join(c.env.root, 'other');
  mkdirSync(other);
  writeFileSync(join(other, 'only'), 'only this\n');
  await c.cli(['mount', 'import', 'rt', other]);
  assert.deepEqual(readdirSync(c.mountData('rt')), ['only']);
  const use = c.env.context('rt-use', { Dockerfile: 'FROM busybox\nRUN --mount=type=cache,target=/c,id=rt cat /c/only > /got\n' });
  const out = join(c.env.root, 'rt-out');
  await c.ok(use, ['-o', `type=local,dest=${out}`]);
  assert.equal(readFileSync(join(out, 'got'), 'utf8'), 'only this\n');
});

test('mount commands name unknown ids and bad sources', async () => {
  for (const args of [['mount', 'export', 'nope', join(c.env.root, 'x')], ['mount', 'rm', 'nope'], ['mount', 'path', 'nope']]) {
    const r = await c.env.strata(args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, /^error: no cache mount with id "nope"$/m, args.join(' '));
    assert.match(r.stderr, /^hint: list them with `strata mount ls`/m);
  }
  assert.ok(!existsSync(join(c.env.root, 'x')), 'nothing written for an unknown id');
  const missing = await c.env.strata(['mount', 'import', 'newone', join(c.env.root, 'does-not-exist')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^error: .*does-not-exist does not exist$/m);
  const odd = join(c.env.root, 'file.txt');
  writeFileSync(odd, 'not a tar');
  const notTar = await c.env.strata(['mount', 'import', 'newone', odd]);
  assert.equal(notTar.code, 1);
  assert.match(notTar.stderr, /neither a folder nor a \.tar/);
  // A failed import creates nothing.
  const list = JSON.parse((await c.cli(['mount', 'ls', '--format', 'json'])).stdout) as { id: string }[];
  assert.ok(!list.some((m) => m.id === 'newone'));
});
