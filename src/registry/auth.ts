// Registry credentials and the two auth schemes distribution speaks: Basic (htpasswd registries) and
// Bearer tokens obtained from the realm a `WWW-Authenticate` challenge names. Credentials come from
// Docker's config.json (`auths`, `credHelpers`, `credsStore`) so `docker login` just works.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { StrataError } from '../errors.js';
import { DOCKER_HUB } from './reference.js';
import { httpRequest, type HttpResponse } from './http.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (`identitytoken` in config.json); exchanged at the token endpoint. */
  identityToken?: string;
  /** A bearer token to send as is (`registrytoken` in config.json). */
  registryToken?: string;
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string; registrytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function defaultDockerConfigPath(): string {
  const dir = process.env.DOCKER_CONFIG || join(homedir(), '.docker');
  return join(dir, 'config.json');
}

export function readDockerConfig(path: string): DockerConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new StrataError('REGISTRY_CONFIG', `cannot read registry credentials from ${path}: ${(e as Error).message}`, {
      hint: 'fix the file permissions or point DOCKER_CONFIG at another directory',
    });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as DockerConfigFile;
  } catch (e) {
    throw new StrataError('REGISTRY_CONFIG', `registry credentials file ${path} is not valid JSON: ${(e as Error).message}`, {
      hint: 'fix the file or log in again with `docker login`',
    });
  }
}

/** config.json keys may be URLs (`https://index.docker.io/v1/`) or bare hosts; compare bare hosts. */
function normalizeAuthKey(key: string): string {
  let k = key.trim().toLowerCase().replace(/^[a-z]+:\/\//, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  if (k === 'index.docker.io' || k === 'registry-1.docker.io' || k === 'registry.hub.docker.com') k = DOCKER_HUB;
  return k;
}

function decodeAuthField(registry: string, auth: string): { username: string; password: string } {
  const decoded = Buffer.from(auth, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) {
    throw new StrataError('REGISTRY_CONFIG', `the "auth" entry for ${registry} in config.json is not base64 of USER:PASSWORD`, {
      hint: `log in again with \`docker login ${registry}\``,
    });
  }
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function runCredentialHelper(helper: string, serverUrl: string): Credentials | undefined {
  const r = spawnSync(`docker-credential-${helper}`, ['get'], { input: serverUrl, encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0) return undefined;
  try {
    const out = JSON.parse(r.stdout) as { Username?: string; Secret?: string };
    if (!out.Secret) return undefined;
    // Docker's convention: the user name `<token>` marks the secret as an identity token.
    if (out.Username === '<token>') return { identityToken: out.Secret };
    return { username: out.Username ?? '', password: out.Secret };
  } catch {
    return undefined;
  }
}

/** Credentials for a registry host, or undefined for anonymous access. */
export function lookupCredentials(registry: string, configPath: string = defaultDockerConfigPath()): Credentials | undefined {
  const cfg = readDockerConfig(configPath);
  const want = normalizeAuthKey(registry);
  const serverUrl = want === DOCKER_HUB ? 'https://index.docker.io/v1/' : registry;

  const helper = Object.entries(cfg.credHelpers ?? {}).find(([k]) => normalizeAuthKey(k) === want)?.[1] ?? cfg.credsStore;
  if (helper) {
    const fromHelper = runCredentialHelper(helper, serverUrl);
    if (fromHelper) return fromHelper;
  }
  for (const [key, entry] of Object.entries(cfg.auths ?? {})) {
    if (normalizeAuthKey(key) !== want || !entry) continue;
    const creds: Credentials = {};
    if (entry.auth) Object.assign(creds, decodeAuthField(registry, entry.auth));
    if (entry.username !== undefined) creds.username = entry.username;
    if (entry.password !== undefined) creds.password = entry.password;
    if (entry.identitytoken) creds.identityToken = entry.identitytoken;
    if (entry.registrytoken) creds.registryToken = entry.registrytoken;
    if (Object.keys(creds).length > 0) return creds;
  }
  return undefined;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (several challenges may share one header). */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  const re = /\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)/y;
  const paramRe = /\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/y;
  let pos = 0;
  while (pos < header.length) {
    re.lastIndex = pos;
    const m = re.exec(header);
    if (!m) break;
    const challenge: Challenge = { scheme: m[1]!.toLowerCase(), params: {} };
    pos = re.lastIndex;
    for (;;) {
      paramRe.lastIndex = pos;
      const p = paramRe.exec(header);
      if (!p) break;
      // A token followed by whitespace and no '=' begins the next challenge, which the regex rejects.
      challenge.params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
      pos = paramRe.lastIndex;
    }
    out.push(challenge);
    while (pos < header.length && (header[pos] === ',' || header[pos] === ' ')) pos++;
  }
  return out;
}

function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`;
}

interface CachedToken {
  header: string;
  expiresAt: number;
  /** `repository:NAME` -> actions the token grants (as requested). */
  grants?: Map<string, Set<string>>;
}

/** `repository:a/b:pull,push` -> resource `repository:a/b`, actions {pull, push}. */
function scopeGrants(scopes: readonly string[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const s of scopes) {
    const i = s.lastIndexOf(':');
    const resource = i < 0 ? s : s.slice(0, i);
    const actions = i < 0 ? [] : s.slice(i + 1).split(',').filter(Boolean);
    const set = out.get(resource) ?? new Set<string>();
    for (const a of actions) set.add(a);
    out.set(resource, set);
  }
  return out;
}

function covers(have: Map<string, Set<string>>, want: Map<string, Set<string>>): boolean {
  for (const [resource, actions] of want) {
    const h = have.get(resource);
    if (!h) return false;
    for (const a of actions) if (!h.has(a) && !h.has('*')) return false;
  }
  return true;
}

export interface AuthOptions {
  configPath?: string;
  userAgent: string;
}

/**
 * Remembers, per registry, which scheme it challenged with, and per (registry, scopes) the token it
 * handed out, so a build asks the token endpoint once per repository and action set.
 */
export class Authenticator {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();
  private readonly creds = new Map<string, Credentials | undefined>();

  constructor(private readonly opts: AuthOptions) {}

  credentialsFor(registry: string): Credentials | undefined {
    if (!this.creds.has(registry)) this.creds.set(registry, lookupCredentials(registry, this.opts.configPath));
    return this.creds.get(registry);
  }

  /** The Authorization header to send up front, if this registry has challenged us before. */
  async cachedHeader(registry: string, scopes: readonly string[]): Promise<string | undefined> {
    const challenge = this.challenges.get(registry);
    if (!challenge) return undefined;
    return this.headerFor(registry, scopes, challenge, undefined);
  }

  /**
   * Answers a 401: remembers the challenge and returns a header to retry with (a new token unless a
   * concurrent request already got one), or undefined if we have nothing to offer.
   */
  async onUnauthorized(registry: string, scopes: readonly string[], wwwAuthenticate: string | null, rejected?: string): Promise<string | undefined> {
    const all = parseWwwAuthenticate(wwwAuthenticate ?? '');
    const challenge = all.find((c) => c.scheme === 'bearer') ?? all.find((c) => c.scheme === 'basic');
    if (!challenge) return undefined;
    this.challenges.set(registry, challenge);
    return this.headerFor(registry, scopes, challenge, rejected ?? '');
  }

  /** `rejected`: undefined = any valid cached token will do; a string = the header the registry refused. */
  private async headerFor(registry: string, scopes: readonly string[], challenge: Challenge, rejected: string | undefined): Promise<string | undefined> {
    const creds = this.credentialsFor(registry);
    if (challenge.scheme === 'basic') {
      return creds && (creds.username !== undefined || creds.password !== undefined) ? basicHeader(creds) : undefined;
    }
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
    const key = `${registry} ${[...scopes].sort().join(' ')}`;
    const inFlight = this.pending.get(key);
    if (inFlight) return (await inFlight).header;
    const now = Date.now();
    const exact = this.tokens.get(key);
    if (exact && exact.expiresAt > now && exact.header !== rejected) return exact.header;
    if (rejected === undefined) {
      // A token asked for with more actions (pull,push) also serves a pull of the same repository.
      const want = scopeGrants(scopes);
      for (const [k, t] of this.tokens) {
        if (k.startsWith(`${registry} `) && t.expiresAt > now && t.grants && covers(t.grants, want)) return t.header;
      }
    }
    // Concurrent requests for one scope share a single trip to the token service.
    const fetching = this.fetchToken(registry, scopes, challenge, creds).then((token) => {
      token.grants = scopeGrants(scopes);
      this.tokens.set(key, token);
      return token;
    }).finally(() => this.pending.delete(key));
    this.pending.set(key, fetching);
    return (await fetching).header;
  }

  private async fetchToken(registry: string, scopes: readonly string[], challenge: Challenge, creds: Credentials | undefined): Promise<CachedToken> {
    const realm = challenge.params.realm;
    if (!realm) {
      throw new StrataError('REGISTRY_AUTH', `registry ${registry} asked for a bearer token but named no token endpoint (realm)`, {
        hint: 'the registry is misconfigured; check its auth settings',
      });
    }
    const service = challenge.params.service;
    const allScopes = scopes.length > 0 ? scopes : (challenge.params.scope ? [challenge.params.scope] : []);
    let res: HttpResponse;
    try {
      if (creds?.identityToken) {
        // OAuth2 refresh-token grant, as `docker login` with an identity token does.
        const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'strata' });
        if (service) body.set('service', service);
        if (allScopes.length) body.set('scope', allScopes.join(' '));
        res = await httpRequest(realm, {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'User-Agent': this.opts.userAgent },
          body: Buffer.from(body.toString()),
        });
      } else {
        const url = new URL(realm);
        if (service) url.searchParams.set('service', service);
        for (const s of allScopes) url.searchParams.append('scope', s);
        const headers: Record<string, string> = { 'User-Agent': this.opts.userAgent };
        if (creds && (creds.username !== undefined || creds.password !== undefined)) headers.Authorization = basicHeader(creds);
        res = await httpRequest(url.toString(), { headers });
      }
    } catch (e) {
      throw new StrataError('REGISTRY_UNREACHABLE', `cannot reach the token service ${realm} of registry ${registry}: ${describeFetchError(e)}`, {
        hint: 'check the network and that the registry auth service is up', cause: e,
      });
    }
    if (!res.ok) await res.discard();
    if (res.status === 401 || res.status === 403) {
      throw new StrataError('REGISTRY_UNAUTHORIZED', `registry ${registry} refused the credentials for ${allScopes.join(' ') || 'access'} (token service answered ${res.status})`, {
        hint: creds ? `log in again with \`docker login ${registry}\` (credentials from ${this.opts.configPath ?? defaultDockerConfigPath()})` : `log in with \`docker login ${registry}\``,
      });
    }
    if (!res.ok) {
      throw new StrataError('REGISTRY_AUTH', `token service ${realm} of registry ${registry} answered ${res.status} ${res.statusText}`, {
        hint: 'retry later; if it persists the registry auth service is failing',
      });
    }
    let body: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      body = await res.json<typeof body>(1024 * 1024);
    } catch (e) {
      throw new StrataError('REGISTRY_AUTH', `token service ${realm} of registry ${registry} sent an unreadable answer: ${describeFetchError(e)}`, {
        hint: 'the registry auth service is misbehaving; retry later',
      });
    }
    const token = body.token ?? body.access_token;
    if (!token) {
      throw new StrataError('REGISTRY_AUTH', `token service ${realm} of registry ${registry} returned no token`, {
        hint: 'the registry auth service is misbehaving; retry later',
      });
    }
    // The spec's default lifetime is 60 s; renew a little early so a request never carries a stale token.
    const lifetime = Math.max(10, body.expires_in ?? 60);
    return { header: `Bearer ${token}`, expiresAt: Date.now() + (lifetime - 5) * 1000 };
  }
}

/** `ECONNREFUSED`, `ENOTFOUND`... from a failed request (HttpTransportError or fetch), else its message. */
export function describeFetchError(e: unknown): string {
  const err = e as { cause?: { code?: string; message?: string }; message?: string };
  const cause = err.cause;
  if (cause?.code) return cause.message && !cause.message.includes(cause.code) ? `${cause.code} ${cause.message}` : (cause.message ?? cause.code);
  return cause?.message ?? err.message ?? String(e);
}
