// COPY and ADD end to end: what lands in the image, with owners and modes checked from inside a
// container, and ADD of a URL from a local HTTP server with good and bad checksums.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, busyboxArgs, expectOk, run } from './harness.js';
import { busyboxLayout } from '../helpers/base-images.js';

function serve(files: Record<string, string>): Promise<{ url: string; hits: string[]; server: Server }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const body = files[req.url ?? ''];
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) }).end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const addr = server.address() as { port: number };
    resolve({ url: `http://127.0.0.1:${addr.port}`, hits, server });
  }));
}

test('COPY and ADD: context, .dockerignore, wildcards, owners, modes, --from, --link, --exclude, --parents, archives, heredoc', async (t) => {
  const env = new StrataEnv('strata-e2e-copy-');
  t.after(() => env.cleanup());
  const ctx = env.context('ctx', {
    'f1.txt': 'one\n',
    'f2.txt': 'two\n',
    'other.md': 'not a txt\n',
    'ignored.txt': 'must not be copied\n',
    'x.secret': 'must not be copied either\n',
    'dir/x.log': 'log\n',
    'dir/keep.md': 'keep\n',
    'dir/sub/in.txt': 'nested\n',
    'pkg/a/p.json': '{"a":1}\n',
    'pkg/b/p.json': '{"b":2}\n',
    'pkg/b/other.json': 'not selected\n',
    'tarsrc/t.txt': 'from the tarball\n',
    'tarsrc/deep/d.txt': 'deep in the tarball\n',
    '.dockerignore': 'ignored.txt\n*.secret\ntarsrc\n',
    Dockerfile: `FROM busybox AS stage1
RUN mkdir -p /st && echo "from stage1" > /st/s.txt

FROM busybox
COPY f1.txt /c/single/
COPY f*.txt /c/wild/
COPY dir /c/dircontents/
COPY --chown=app f1.txt /c/chown-name
COPY --chown=1234:5678 f1.txt /c/chown-uid
COPY --chmod=640 f1.txt /c/chmod
COPY --from=stage1 /st/s.txt /c/fromstage
COPY --from=bbimage /etc/passwd /c/fromimage-passwd
COPY --link f2.txt /c/link
COPY --exclude=*.log dir /c/excl/
COPY --parents pkg/*/p.json /c/parents/
ADD arch.tar.gz /c/untar/
COPY arch.tar.gz /c/notextracted/
COPY . /c/all/
COPY <<EOF /c/heredoc
hello heredoc
EOF
RUN cd /c && stat -c '%n %u:%g %a' chown-name chown-uid chmod single/f1.txt > /stat.txt
`,
  });
  // A gzip tarball in the context (its source dir is .dockerignored so only the archive counts).
  expectOk(await run('tar', ['-czf', join(ctx, 'arch.tar.gz'), '-C', join(ctx, 'tarsrc'), '.']), 'tar');
  const out = join(env.root, 'out');
  expectOk(
    await env.build(ctx, [...(await busyboxArgs()), '--build-context', `bbimage=oci-layout://${await busyboxLayout()}:latest`, '-o', `type=local,dest=${out}`]),
    'build',
  );
  const read = (p: string) => readFileSync(join(out, p), 'utf8');
  const has = (p: string) => existsSync(join(out, p));

  assert.equal(read('c/single/f1.txt'), 'one\n');
  assert.equal(read('c/wild/f1.txt'), 'one\n');
  assert.equal(read('c/wild/f2.txt'), 'two\n');
  assert.ok(!has('c/wild/other.md'));
  // A directory source copies its contents, not the directory itself.
  assert.equal(read('c/dircontents/keep.md'), 'keep\n');
  assert.equal(read('c/dircontents/sub/in.txt'), 'nested\n');
  assert.ok(!has('c/dircontents/dir'));
  // --chown by name and by uid:gid, --chmod, checked inside the container.
  assert.equal(read('stat.txt'), 'chown-name 1000:1000 644\nchown-uid 1234:5678 644\nchmod 0:0 640\nsingle/f1.txt 0:0 644\n');
  assert.equal(read('c/fromstage'), 'from stage1\n');
  assert.equal(read('c/fromimage-passwd'), readFileSync(join(out, 'etc/passwd'), 'utf8'));
  assert.equal(read('c/link'), 'two\n');
  assert.ok(has('c/excl/keep.md') && has('c/excl/sub/in.txt'));
  assert.ok(!has('c/excl/x.log'), '--exclude=*.log');
  assert.equal(read('c/parents/pkg/a/p.json'), '{"a":1}\n');
  assert.equal(read('c/parents/pkg/b/p.json'), '{"b":2}\n');
  assert.ok(!has('c/parents/pkg/b/other.json'));
  assert.ok(!has('c/parents/p.json'));
  // ADD extracts a local tarball; COPY does not.
  assert.equal(read('c/untar/t.txt'), 'from the tarball\n');
  assert.equal(read('c/untar/deep/d.txt'), 'deep in the tarball\n');
  assert.ok(statSync(join(out, 'c/notextracted/arch.tar.gz')).isFile());
  // COPY . honours .dockerignore.
  for (const p of ['f1.txt', 'dir/sub/in.txt', 'Dockerfile', '.dockerignore', 'arch.tar.gz']) assert.ok(has(`c/all/${p}`), `c/all/${p}`);
  for (const p of ['ignored.txt', 'x.secret', 'tarsrc']) assert.ok(!has(`c/all/${p}`), `c/all/${p} must be ignored`);
  assert.equal(read('c/heredoc'), 'hello heredoc\n');
});

test('ADD of a URL: --checksum that matches is accepted, a wrong one fails naming the line', async (t) => {
  const env = new StrataEnv('strata-e2e-addurl-');
  const body = 'remote content\n';
  const http = await serve({ '/r.txt': body });
  t.after(() => {
    http.server.close();
    env.cleanup();
  });
  const sum = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const ctx = env.context('ctx', {
    Dockerfile: `FROM busybox
ADD --checksum=${sum} ${http.url}/r.txt /r/good.txt
ADD ${http.url}/r.txt /r/
RUN stat -c '%a' /r/r.txt > /r/mode
`,
    'Dockerfile.bad': `FROM busybox
RUN true
ADD --checksum=sha256:${'0'.repeat(64)} ${http.url}/r.txt /r/bad.txt
`,
  });
  const out = join(env.root, 'out');
  const bb = await busyboxArgs();
  expectOk(await env.build(ctx, [...bb, '-o', `type=local,dest=${out}`]), 'build with a good checksum');
  assert.equal(readFileSync(join(out, 'r/good.txt'), 'utf8'), body);
  assert.equal(readFileSync(join(out, 'r/r.txt'), 'utf8'), body);
  // BuildKit gives downloaded files mode 0600.
  assert.equal(readFileSync(join(out, 'r/mode'), 'utf8'), '600\n');
  assert.ok(http.hits.length >= 1);

  const bad = await env.build(ctx, [...bb, '-f', join(ctx, 'Dockerfile.bad')]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /Dockerfile\.bad:3: .*digest mismatch/i);
  assert.match(bad.stderr, /expected sha256:0{64}/);
});
