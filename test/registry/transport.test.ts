// The registry client's HTTP layer (node:http, not fetch): redirected blob downloads without
// leaking credentials, big uploads arriving intact, keep-alive connections the server dropped,
// TLS errors explained, parallel transfers, and a cached build that never loads undici.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { lookup } from 'node:dns/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { StrataError } from '../../src/errors.js';
import { RegistryClient } from '../../src/registry/client.js';
import { forEachLimit } from '../../src/registry/parallel.js';
import { parseReference } from '../../src/registry/reference.js';
import { StrataEnv, expectOk, instructionSteps, parseProgress } from '../build/harness.js';
import { pushBusybox } from '../helpers/base-images.js';
import { startRegistry, writeDockerConfig, type TestRegistry } from '../helpers/registry.js';

let work: string;
let reg: TestRegistry;
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'strata-transport-test-'));
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<StrataError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => { caught = e; return true; });
  assert.ok(caught instanceof StrataError, `expected a StrataError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (message) assert.match(caught.message, message);
  assert.ok(caught.hint);
  return caught;
}

test('a blob GET redirected to another origin arrives verified, without the registry credentials', async () => {
  const blob = randomBytes(3 << 20);
  const digest = sha256(blob);
  const storageSeen: { path: string; authorization?: string }[] = [];
  const storage = createServer((req, res) => {
    storageSeen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    res.writeHead(200, { 'Content-Length': blob.length, 'Content-Type': 'application/octet-stream' });
    res.end(blob);
  });
  const storageHost = await listen(storage);
  const registrySeen: { path: string; authorization?: string }[] = [];
  const front = createServer((req, res) => {
    registrySeen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    if (req.headers.authorization !== `Basic ${Buffer.from('ci:s3cret').toString('base64')}`) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="test"', 'Content-Type': 'application/json' });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    // First hop stays on the registry (relative Location), the second leaves for the storage service.
    if (req.url === `/v2/app/blobs/${digest}`) {
      res.writeHead(302, { Location: `/v2/app/blobs/${digest}?hop=1` });
      res.end();
    } else if (req.url === `/v2/app/blobs/${digest}?hop=1`) {
      res.writeHead(307, { Location: `http://${storageHost}/bucket/${digest.slice(7)}?X-Signature=abc` });
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const frontHost = await listen(front);
  try {
    const configPath = writeDockerConfig(mkdtempSync(join(work, 'cfg-')), { [frontHost]: { username: 'ci', password: 's3cret' } });
    const client = new RegistryClient({ configPath });
    const dest = join(work, 'redirected', 'blob');
    const { size } = await client.fetchBlob(parseReference(`${frontHost}/app:1`), digest, dest);
    assert.equal(size, blob.length);
    assert.ok(readFileSync(dest).equals(blob));
    assert.deepEqual(storageSeen, [{ path: `/bucket/${digest.slice(7)}?X-Signature=abc`, authorization: undefined }], 'storage got the signed URL and no Authorization');
    assert.ok(registrySeen.some((r) => r.path.endsWith('?hop=1') && r.authorization?.startsWith('Basic ')), 'a same-origin hop keeps the credentials');
    // The redirect target serving other bytes is caught like any corrupted download.
    const other = sha256(Buffer.from('something else'));
    await rejectsWith(client.fetchBlob(parseReference(`${frontHost}/app:1`), other, join(work, 'redirected', 'x')), 'BLOB_NOT_FOUND');
    assert.deepEqual(readdirSync(join(work, 'redirected')), ['blob'], 'no temp files left');
  } finally {
    await close(front);
    await close(storage);
  }
});

test('a 40 MiB blob from a file uploads in one PUT, intact (the registry checks the digest), and downloads back', async () => {
  const blob = randomBytes(40 << 20);
  const digest = sha256(blob);
  const file = join(work, 'big.bin');
  writeFileSync(file, blob);
  const client = new RegistryClient();
  const target = parseReference(`${reg.host}/big/blob:1`);
  const before = await reg.requestCount({ method: 'PUT', pathIncludes: '/blobs/uploads/' });
  assert.equal(await client.pushBlob(target, digest, blob.length, file), 'uploaded');
  assert.equal(await reg.requestCount({ method: 'PUT', pathIncludes: '/blobs/uploads/' }) - before, 1);
  assert.equal(await reg.requestCount({ method: 'PATCH' }), 0, 'no chunked PATCH uploads');
  assert.equal(sha256(readFileSync(reg.blobDataPath(digest))), digest, 'the registry stored exactly these bytes');
  const back = join(work, 'big-back', 'blob');
  assert.equal((await client.fetchBlob(target, digest, back)).size, blob.length);
  assert.ok(readFileSync(back).equals(blob));
});

test('a keep-alive connection the server dropped is retried on a new one, for reads and for uploads', async () => {
  const blob = randomBytes(200_000);
  const digest = sha256(blob);
  let served = 0;
  let dropped = 0;
  const uploads: Buffer[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket as Socket & { answered?: number };
    socket.answered = (socket.answered ?? 0) + 1;
    // Every connection serves one request, says keep-alive, then dies on the next one unanswered.
    if (socket.answered > 1) {
      dropped++;
      socket.destroy();
      return;
    }
    served++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'HEAD') {
        res.writeHead(404, { Connection: 'keep-alive' });
        res.end();
      } else if (req.method === 'POST') {
        res.writeHead(202, { Location: '/v2/ka/blobs/uploads/u1', Connection: 'keep-alive', 'Content-Length': 0 });
        res.end();
      } else if (req.method === 'PUT') {
        uploads.push(Buffer.concat(chunks));
        res.writeHead(url.searchParams.get('digest') === sha256(Buffer.concat(chunks)) ? 201 : 400, { Connection: 'keep-alive', 'Content-Length': 0 });
        res.end();
      } else {
        res.writeHead(200, { 'Content-Length': blob.length, Connection: 'keep-alive' });
        res.end(blob);
      }
    });
  });
  server.keepAliveTimeout = 60_000;
  const host = await listen(server);
  try {
    const client = new RegistryClient();
    const ref = parseReference(`${host}/ka:1`);
    assert.ok((await client.fetchBlobBytes(ref, digest)).equals(blob));
    assert.ok((await client.fetchBlobBytes(ref, digest)).equals(blob), 'second GET: the reused connection dies, a new one answers');
    const file = join(work, 'ka.bin');
    writeFileSync(file, blob);
    assert.equal(await client.pushBlob(ref, digest, blob.length, file), 'uploaded');
    assert.ok(dropped >= 2, `connections dropped: ${dropped}`);
    assert.equal(uploads.length, 1);
    assert.ok(uploads[0]!.equals(blob), 'the retried upload sent the whole file once');
    assert.ok(served >= 5);
  } finally {
    await close(server);
  }
});

test('a read the registry answers with a 5xx is asked again (twice at most); a write is not', async () => {
  const blob = randomBytes(1000);
  const digest = sha256(blob);
  const failFirst = new Map<string, number>([['HEAD', 1], ['GET', 2]]);
  const seen: string[] = [];
  let missing = false;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? '';
    seen.push(method);
    req.resume();
    const left = failFirst.get(method) ?? 0;
    // A docker-registry answers 500 for a blob another client is committing right then.
    if (left > 0 || method === 'POST') {
      failFirst.set(method, left - 1);
      res.writeHead(500, { 'Content-Length': 0 });
      res.end();
      return;
    }
    if (method === 'HEAD') res.writeHead(missing ? 404 : 200, { 'Content-Length': blob.length, 'Docker-Content-Digest': digest });
    else res.writeHead(200, { 'Content-Length': blob.length });
    res.end(method === 'GET' ? blob : undefined);
  });
  const host = await listen(server);
  try {
    const client = new RegistryClient();
    const ref = parseReference(`${host}/flaky:1`);
    assert.equal(await client.blobExists(ref, digest), true);
    assert.ok((await client.fetchBlobBytes(ref, digest)).equals(blob));
    assert.deepEqual(seen, ['HEAD', 'HEAD', 'GET', 'GET', 'GET']);
    // Always 500: three tries, then a clear error.
    failFirst.set('HEAD', 99);
    seen.length = 0;
    await rejectsWith(client.blobExists(ref, digest), 'REGISTRY_ERROR', /500/);
    assert.deepEqual(seen, ['HEAD', 'HEAD', 'HEAD']);
    // An upload start is no read: one try.
    failFirst.set('HEAD', 0);
    missing = true;
    seen.length = 0;
    const file = join(work, 'flaky.bin');
    writeFileSync(file, blob);
    await assert.rejects(client.pushBlob(ref, digest, blob.length, file));
    assert.equal(seen.filter((m) => m === 'POST').length, 1);
  } finally {
    await close(server);
  }
});

test('HTTPS with an untrusted certificate fails with a hint about insecure registries', async (t) => {
  const dir = mkdtempSync(join(work, 'tls-'));
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    '-days', '1', '-subj', '/CN=localhost'], { encoding: 'utf8' });
  if (r.status !== 0) {
    t.skip('openssl cannot make a certificate');
    return;
  }
  const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (_req, res) => {
    res.writeHead(200);
    res.end('{}');
  });
  // Loopback addresses are plain HTTP for strata; this machine's own name speaks HTTPS.
  const name = hostname().toLowerCase();
  const resolved = await lookup(name).catch(() => undefined);
  if (!resolved || name === 'localhost') {
    t.skip(`this machine's name ${name} does not resolve`);
    return;
  }
  await new Promise<void>((resolve) => server.listen(0, resolved.address, resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const client = new RegistryClient();
    const ref = parseReference(`${name}:${port}/x:1`);
    assert.equal(client.isPlainHttp(ref.registry), false);
    const e = await rejectsWith(client.resolve(ref), 'REGISTRY_UNREACHABLE', new RegExp(`cannot reach registry ${name}:${port} at https:.*(self.signed|certificate)`));
    assert.match(e.hint!, /does not speak trusted HTTPS.*insecure registries/);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('forEachLimit runs at most N at once, all of them, and reports the first failure after the started ones settle', async () => {
  let active = 0;
  let peak = 0;
  const done: number[] = [];
  await forEachLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
    active++;
    peak = Math.max(peak, active);
    await new Promise((r) => setTimeout(r, 5 * (n % 3)));
    done.push(n);
    active--;
  });
  assert.equal(peak, 3);
  assert.deepEqual(done.sort(), [1, 2, 3, 4, 5, 6, 7]);
  const settled: number[] = [];
  await assert.rejects(forEachLimit([1, 2, 3, 4, 5], 2, async (n) => {
    if (n === 1) throw new Error('first fails');
    await new Promise((r) => setTimeout(r, 10));
    settled.push(n);
  }), /first fails/);
  assert.deepEqual(settled, [2], 'nothing new starts after a failure; the running one finishes');
});

test('a fully cached build from a registry base never loads undici (no fetch on the HEAD of the base tag)', async () => {
  const base = await pushBusybox(reg.host);
  const env = new StrataEnv('strata-transport-undici-');
  try {
    const ctx = env.context('ctx', { Dockerfile: `FROM ${base.ref}\nRUN echo hi > /hi\n` });
    const hook = join(work, 'modules-hook.cjs');
    const out = join(work, 'modules.txt');
    writeFileSync(hook, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, process.moduleLoadList.join('\\n')));\n`);
    expectOk(await env.build(ctx, ['--progress=plain']), 'first build');
    const again = expectOk(await env.build(ctx, ['--progress=plain'], { env: { NODE_OPTIONS: `--require ${hook}` } }), 'no-change build');
    const steps = instructionSteps(parseProgress(again.stderr));
    assert.ok(steps.length > 0 && steps.every((s) => s.cached), again.stderr);
    const modules = readFileSync(out, 'utf8').split('\n');
    assert.ok(modules.some((m) => m.includes('node:http') || m.includes(' http')), 'the hook saw the registry client load node:http');
    assert.deepEqual(modules.filter((m) => /undici/i.test(m)), [], 'undici stays unloaded');
  } finally {
    env.cleanup();
  }
});
