// Test helper: a bearer-token service for docker-registry's `auth: token` mode, so the client's
// WWW-Authenticate -> token endpoint -> Bearer flow runs against the real registry.
//
//   const ts = await startTokenServer({ users: { alice: 'secret' } });
//   const reg = await startRegistry({ auth: { token: ts.registryAuth } });
//   ... ts.requests lists every token request (user, scopes, status) for caching asserts
//   await ts.stop(); await reg.stop();
//
// Tokens are RS256 JWTs whose header carries the signing certificate (x5c); the registry trusts
// that self-signed certificate through `rootcertbundle`. Made with the `openssl` CLI (Node cannot
// issue X.509 certificates); `startTokenServer` throws `TokenServerUnavailable` without it.
// Anonymous requests get tokens only for repositories listed in `anonymousPull`.
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createSign, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class TokenServerUnavailable extends Error {}

export interface TokenRequest {
  user?: string;
  scopes: string[];
  status: number;
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  registryAuth: { realm: string; service: string; issuer: string; rootCertBundle: string };
  requests: TokenRequest[];
  stop(): Promise<void>;
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

export async function startTokenServer(opts: { users: Record<string, string>; anonymousPull?: string[]; expiresIn?: number }): Promise<TokenServer> {
  const dir = mkdtempSync(join(tmpdir(), 'strata-token-'));
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '2', '-subj', '/CN=strata-test-token-issuer'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new TokenServerUnavailable(`openssl could not make a signing certificate: ${r.error?.message ?? r.stderr}`);
  }
  const key = createPrivateKey(readFileSync(keyFile));
  const certDer = new X509Certificate(readFileSync(certFile)).raw;
  const service = 'strata-test-registry';
  const issuer = 'strata-test-issuer';
  const requests: TokenRequest[] = [];

  const sign = (sub: string, scopes: string[]): string => {
    const access = scopes.map((s) => {
      const [type, name, actions] = s.split(':');
      return { type, name, actions: (actions ?? '').split(',').filter(Boolean) };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const claims = { iss: issuer, sub, aud: service, exp: now + (opts.expiresIn ?? 300), nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(input).sign(key);
    return `${input}.${b64url(sig)}`;
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
    let user: string | undefined;
    const authz = req.headers.authorization;
    if (authz?.startsWith('Basic ')) {
      const [u, ...p] = Buffer.from(authz.slice(6), 'base64').toString('utf8').split(':');
      if (u !== undefined && opts.users[u] !== undefined && opts.users[u] === p.join(':')) user = u;
      else {
        requests.push({ user: u, scopes, status: 401 });
        res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
    }
    if (url.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    let granted = scopes;
    if (!user) {
      granted = scopes.map((s) => {
        const [type, name] = s.split(':');
        return opts.anonymousPull?.includes(name ?? '') ? `${type}:${name}:pull` : '';
      }).filter(Boolean);
      if (granted.length === 0 && scopes.length > 0) {
        requests.push({ scopes, status: 401 });
        res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"details":"authentication required"}');
        return;
      }
    }
    requests.push({ user, scopes, status: 200 });
    const token = sign(user ?? '', granted);
    res.writeHead(200, { 'Content-Type': 'application/json' })
      .end(JSON.stringify({ token, access_token: token, expires_in: opts.expiresIn ?? 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const realm = `http://127.0.0.1:${port}/token`;
  return {
    realm, service, issuer, requests,
    registryAuth: { realm, service, issuer, rootCertBundle: certFile },
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
