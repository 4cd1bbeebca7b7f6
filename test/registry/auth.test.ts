// Registry auth: config.json parsing, WWW-Authenticate parsing, Basic auth against an htpasswd
// registry and the Bearer token flow against a registry in token mode.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StrataError } from '../../src/errors.js';
import { lookupCredentials, parseWwwAuthenticate } from '../../src/registry/auth.js';
import { RegistryClient } from '../../src/registry/client.js';
import { parseReference } from '../../src/registry/reference.js';
import { pushImage } from '../../src/image/push.js';
import { busyboxImage } from '../helpers/base-images.js';
import { makeHtpasswd, startRegistry, writeDockerConfig, type TestRegistry } from '../helpers/registry.js';
import { startTokenServer, TokenServerUnavailable, type TokenServer } from '../helpers/token-server.js';

let work: string;
before(() => { work = mkdtempSync(join(tmpdir(), 'strata-auth-test-')); });
after(() => { if (work) rmSync(work, { recursive: true, force: true }); });

function b64(s: string): string {
  return Buffer.from(s).toString('base64');
}

async function rejectsCode(p: Promise<unknown>, code: string): Promise<StrataError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => { caught = e; return true; });
  assert.ok(caught instanceof StrataError, String(caught));
  assert.equal(caught.code, code, caught.message);
  assert.ok(caught.hint);
  return caught;
}

describe('credentials from config.json', () => {
  test('auth field, username/password, identity token, URL-shaped keys, Docker Hub aliases', () => {
    const path = join(work, 'config.json');
    writeFileSync(path, JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass') },
        'reg.example.com:5000': { username: 'u', password: 'p' },
        'https://tok.example.com/v2/': { identitytoken: 'refresh-me' },
        'http://localhost:5000': { auth: b64('local:pw') },
      },
    }));
    assert.deepEqual(lookupCredentials('docker.io', path), { username: 'hubuser', password: 'hub:pass' });
    assert.deepEqual(lookupCredentials('reg.example.com:5000', path), { username: 'u', password: 'p' });
    assert.deepEqual(lookupCredentials('tok.example.com', path), { identityToken: 'refresh-me' });
    assert.deepEqual(lookupCredentials('localhost:5000', path), { username: 'local', password: 'pw' });
    assert.equal(lookupCredentials('reg.example.com', path), undefined, 'a port is part of the key');
    assert.equal(lookupCredentials('other.io', path), undefined);
  });

  test('missing file means anonymous; broken JSON and broken auth are explained', () => {
    assert.equal(lookupCredentials('x.io', join(work, 'does-not-exist.json')), undefined);
    const bad = join(work, 'bad.json');
    writeFileSync(bad, '{ "auths": ');
    assert.throws(() => lookupCredentials('x.io', bad), (e: unknown) => e instanceof StrataError && e.code === 'REGISTRY_CONFIG' && e.message.includes(bad));
    const badAuth = join(work, 'bad-auth.json');
    writeFileSync(badAuth, JSON.stringify({ auths: { 'x.io': { auth: b64('no-colon') } } }));
    assert.throws(() => lookupCredentials('x.io', badAuth), /not base64 of USER:PASSWORD/);
  });

  test('DOCKER_CONFIG points at the directory holding config.json', () => {
    const dir = mkdtempSync(join(work, 'dc-'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ auths: { 'env.example': { auth: b64('a:b') } } }));
    const saved = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = dir;
    try {
      assert.deepEqual(lookupCredentials('env.example'), { username: 'a', password: 'b' });
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG; else process.env.DOCKER_CONFIG = saved;
    }
  });
});

test('parseWwwAuthenticate reads bearer and basic challenges', () => {
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="r",scope="a b", Basic realm="x"').map((c) => c.scheme), ['bearer', 'basic']);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="with \\"quote\\""')[0]!.params.realm, 'with "quote"');
});

describe('Basic auth against an htpasswd registry', () => {
  let reg: TestRegistry | undefined;
  let skip = '';
  before(async () => {
    const h = makeHtpasswd('alice', 's3cret-pw');
    if ('skip' in h) { skip = h.skip; return; }
    const file = join(work, 'htpasswd');
    writeFileSync(file, h.line + '\n');
    reg = await startRegistry({ auth: { htpasswd: { file } } });
  });
  after(async () => { await reg?.stop(); });

  test('push and pull with credentials from config.json', async (t) => {
    if (!reg) return t.skip(skip);
    const cfg = writeDockerConfig(mkdtempSync(join(work, 'basic-')), { [reg.host]: { username: 'alice', password: 's3cret-pw' } });
    const client = new RegistryClient({ configPath: cfg });
    const image = await busyboxImage();
    const target = parseReference(`${reg.host}/private/bb:1`);
    await pushImage(client, image, [target]);
    const r = await client.resolve(target);
    assert.equal(r.digest, image.manifestDigest);
    const cfgBytes = await client.fetchBlobBytes(target, image.configDigest);
    assert.ok(cfgBytes.equals(image.config));
    const reqs = await reg.requests();
    assert.ok(reqs.some((q) => q.status === 401), 'the registry challenged first');
    assert.ok(reqs.some((q) => q.method === 'PUT' && q.path.endsWith('/manifests/1') && q.status === 201));
  });

  test('no credentials or a wrong password is REGISTRY_UNAUTHORIZED with a login hint', async (t) => {
    if (!reg) return t.skip(skip);
    const target = parseReference(`${reg.host}/private/bb:1`);
    const anon = new RegistryClient({ configPath: join(work, 'none.json') });
    const e1 = await rejectsCode(anon.resolve(target), 'REGISTRY_UNAUTHORIZED');
    assert.match(e1.message, /no credentials for it are configured/);
    assert.match(e1.hint!, new RegExp(`docker login ${reg.host.replace(/\./g, '\\.')}`));
    const wrongCfg = writeDockerConfig(mkdtempSync(join(work, 'wrong-')), { [reg.host]: { username: 'alice', password: 'nope' } });
    await rejectsCode(new RegistryClient({ configPath: wrongCfg }).resolve(target), 'REGISTRY_UNAUTHORIZED');
  });
});

describe('Bearer token flow against a token-auth registry', () => {
  let ts: TokenServer | undefined;
  let reg: TestRegistry | undefined;
  let skip = '';
  before(async () => {
    try {
      ts = await startTokenServer({ users: { bob: 'hunter2' }, anonymousPull: ['public/bb'] });
    } catch (e) {
      if (e instanceof TokenServerUnavailable) { skip = e.message; return; }
      throw e;
    }
    reg = await startRegistry({ auth: { token: ts.registryAuth } });
  });
  after(async () => {
    await reg?.stop();
    await ts?.stop();
  });

  test('push and pull with a token fetched with Basic credentials; tokens are cached per scope', async (t) => {
    if (!reg || !ts) return t.skip(skip);
    const cfg = writeDockerConfig(mkdtempSync(join(work, 'bearer-')), { [reg.host]: { username: 'bob', password: 'hunter2' } });
    const client = new RegistryClient({ configPath: cfg });
    const image = await busyboxImage();
    const target = parseReference(`${reg.host}/team/bb:1`);
    await pushImage(client, image, [target]);
    const pushTokens = ts.requests.filter((r) => r.status === 200);
    assert.equal(pushTokens.length, 1, `one token for the whole push: ${JSON.stringify(ts.requests)}`);
    assert.equal(pushTokens[0]!.user, 'bob', 'the token request carried the Basic credentials');
    assert.deepEqual(pushTokens[0]!.scopes, ['repository:team/bb:pull,push']);

    // The pull,push token also covers pulling the same repository.
    let before = ts.requests.length;
    assert.equal((await client.resolve(target)).digest, image.manifestDigest);
    assert.equal(ts.requests.length, before, 'no new token for a pull the push token covers');

    // A fresh client asks once for the pull scope, then reuses the token.
    const puller = new RegistryClient({ configPath: cfg });
    before = ts.requests.length;
    assert.equal((await puller.resolve(target)).digest, image.manifestDigest);
    assert.equal((await puller.resolve(target)).digest, image.manifestDigest);
    assert.ok((await puller.fetchBlobBytes(target, image.configDigest)).equals(image.config));
    const pulls = ts.requests.slice(before);
    assert.equal(pulls.length, 1, `one token for the pull scope, then cached: ${JSON.stringify(pulls)}`);
    assert.deepEqual(pulls[0]!.scopes, ['repository:team/bb:pull']);

    // Cross-repository mount asks for push on the target and pull on the source in one token.
    const layer = image.layers[0]!;
    const res = await client.pushBlob(parseReference(`${reg.host}/team/copy:1`), layer.digest, layer.size, image.blobs.path(layer.digest), { mountFrom: target });
    assert.equal(res, 'mounted');
    const mountToken = ts.requests[ts.requests.length - 1]!;
    assert.deepEqual([...mountToken.scopes].sort(), ['repository:team/bb:pull', 'repository:team/copy:pull,push']);
  });

  test('anonymous pull works where the token service allows it, and is refused elsewhere', async (t) => {
    if (!reg || !ts) return t.skip(skip);
    const cfg = writeDockerConfig(mkdtempSync(join(work, 'bearer-pub-')), { [reg.host]: { username: 'bob', password: 'hunter2' } });
    const image = await busyboxImage();
    await pushImage(new RegistryClient({ configPath: cfg }), image, [parseReference(`${reg.host}/public/bb:1`)]);

    const anon = new RegistryClient({ configPath: join(work, 'none.json') });
    assert.equal((await anon.resolve(parseReference(`${reg.host}/public/bb:1`))).digest, image.manifestDigest);
    const e = await rejectsCode(anon.resolve(parseReference(`${reg.host}/team/bb:1`)), 'REGISTRY_UNAUTHORIZED');
    assert.match(e.message, new RegExp(reg.host.replace(/\./g, '\\.')));

    const wrongCfg = writeDockerConfig(mkdtempSync(join(work, 'bearer-wrong-')), { [reg.host]: { username: 'bob', password: 'wrong' } });
    const w = await rejectsCode(new RegistryClient({ configPath: wrongCfg }).resolve(parseReference(`${reg.host}/team/bb:1`)), 'REGISTRY_UNAUTHORIZED');
    assert.match(w.message, /refused the credentials/);
  });
});
