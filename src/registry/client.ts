// The OCI distribution client: manifests and blobs over HTTP(S) (node:http, ./http.ts). Every byte that
// comes back is checked against the digest it was asked for before anyone else sees it; pushes are
// monolithic (POST an upload, PUT it with ?digest=), skipped when the blob exists, mounted across
// repositories of the same registry when the caller knows where the blob already lives.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError } from '../errors.js';
import { Authenticator, describeFetchError } from './auth.js';
import { BodyTooLarge, HttpTransportError, httpRequest, type HttpResponse } from './http.js';
import { digestAlgorithm, digestOf, hasherFor } from './digest.js';
import {
  MANIFEST_ACCEPT, MediaTypes, isIndexMediaType, isManifestMediaType, type Index,
} from './media-types.js';
import { formatPlatform, selectPlatform, type PlatformSpec } from './platform.js';
import {
  allowsPlainHttp, formatReference, registryBaseUrl, validateDigest, type ImageReference,
} from './reference.js';

/** Answers to a read that are worth asking again (see RegistryClient.request). */
const RETRIED_STATUS = new Set([500, 502, 503, 504]);

export interface RegistryClientOptions {
  /** Hosts (`host:port`, `host`, or IPv4 CIDR) reached over plain HTTP; loopback always is. */
  insecureRegistries?: string[];
  /** Docker config.json to read credentials from (default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`). */
  configPath?: string;
  userAgent?: string;
}

export interface ResolvedManifest {
  digest: string;
  mediaType: string;
  manifest: Buffer;
  /** Set when the reference named an index (manifest list) and a platform's manifest was picked from it. */
  indexDigest?: string;
}

export interface FetchedManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export type BlobOpener = string | (() => Readable);

export interface PushBlobOptions {
  /** A repository on the same registry that already holds the blob: try a cross-repo mount first. */
  mountFrom?: ImageReference;
}

export type PushBlobResult = 'exists' | 'mounted' | 'uploaded';

interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: () => Readable | Buffer | undefined;
  scopes: string[];
  /** A full URL (upload locations); otherwise `path` relative to the registry base. */
  url?: string;
  path?: string;
  /** What we are doing, for error messages. */
  what: string;
}

const DEFAULT_PLATFORM: PlatformSpec = { os: 'linux', architecture: 'amd64' };
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

function pullScope(ref: ImageReference): string {
  return `repository:${ref.repository}:pull`;
}

function pushScope(ref: ImageReference): string {
  return `repository:${ref.repository}:pull,push`;
}

/** Connection failures worth one more try; refused connections and DNS failures are not. */
function isTransient(e: unknown): boolean {
  const code = (e as { cause?: { code?: string } }).cause?.code ?? '';
  return ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN'].includes(code);
}

/**
 * A keep-alive connection the server closed just as we reused it: nothing of the request was
 * processed, so even an upload can be sent again.
 */
function isStaleConnection(e: unknown): boolean {
  return e instanceof HttpTransportError && e.reusedSocket && ['ECONNRESET', 'EPIPE'].includes(e.cause.code ?? '');
}

function contentType(res: HttpResponse): string | undefined {
  const ct = res.header('content-type');
  return ct ? ct.split(';')[0]!.trim() : undefined;
}

async function registryErrorText(res: HttpResponse): Promise<string> {
  try {
    const text = await res.text(1024 * 1024);
    const body = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string; detail?: unknown }> };
    const e = body.errors?.[0];
    if (e) return [e.code, e.message].filter(Boolean).join(': ');
    return text.slice(0, 200);
  } catch {
    return '';
  }
}

/** Hashes what passes through and fails the stream at its end if the digest differs. */
class VerifyingStream extends Transform {
  private readonly hash;
  size = 0;
  constructor(private readonly expected: string, private readonly describe: (actual: string) => StrataError) {
    super();
    this.hash = hasherFor(expected);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const actual = `${digestAlgorithm(this.expected)}:${this.hash.digest('hex')}`;
    cb(actual === this.expected ? null : this.describe(actual));
  }
}

export class RegistryClient {
  private readonly insecure: string[];
  private readonly userAgent: string;
  private readonly auth: Authenticator;

  constructor(opts: RegistryClientOptions = {}) {
    this.insecure = opts.insecureRegistries ?? [];
    this.userAgent = opts.userAgent ?? 'strata/0.1';
    this.auth = new Authenticator({ configPath: opts.configPath, userAgent: this.userAgent });
  }

  /** Whether requests to this registry go over plain HTTP. */
  isPlainHttp(registry: string): boolean {
    return allowsPlainHttp(registry, this.insecure);
  }

  // ---- manifests ----------------------------------------------------------------------------

  /**
   * The manifest for `ref` (its digest wins over its tag); an index or manifest list is resolved to
   * the entry for `platform`. Every manifest's bytes are checked against the digest that names them.
   */
  async resolve(ref: ImageReference, platform: PlatformSpec = DEFAULT_PLATFORM): Promise<ResolvedManifest> {
    const top = await this.getManifest(ref);
    if (!isIndexMediaType(top.mediaType)) return { digest: top.digest, mediaType: top.mediaType, manifest: top.bytes };

    let indexDigest = top.digest;
    let current = top;
    // Nested indexes are legal; follow a few levels, never forever.
    for (let depth = 0; depth < 4; depth++) {
      const index = JSON.parse(current.bytes.toString('utf8')) as Index;
      const manifests = Array.isArray(index.manifests) ? index.manifests : [];
      const chosen = selectPlatform(manifests, platform);
      if (!chosen) {
        const have = manifests.filter((d) => d.platform && d.platform.os !== 'unknown').map((d) => formatPlatform(d.platform!));
        throw new StrataError('PLATFORM_NOT_FOUND', `image ${formatReference(ref)} has no manifest for platform ${formatPlatform(platform)}`, {
          hint: have.length ? `it is available for: ${[...new Set(have)].join(', ')}; pick one with --platform` : 'the image index lists no platforms',
        });
      }
      const next = await this.getManifest({ ...ref, tag: undefined, digest: chosen.digest }, chosen.size);
      if (!isIndexMediaType(next.mediaType)) {
        return { digest: next.digest, mediaType: next.mediaType, manifest: next.bytes, indexDigest };
      }
      indexDigest = next.digest;
      current = next;
    }
    throw new StrataError('UNSUPPORTED_MANIFEST', `image ${formatReference(ref)} nests indexes too deeply`, {
      hint: 'the image index is malformed; ask its publisher',
    });
  }

  /** One manifest or index by tag or digest, digest-verified, without platform resolution. */
  async getManifest(ref: ImageReference, expectedSize?: number): Promise<FetchedManifest> {
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const res = await this.request(ref, {
      path: `/v2/${ref.repository}/manifests/${reference}`,
      headers: { Accept: MANIFEST_ACCEPT.join(', ') },
      scopes: [pullScope(ref)],
      what: `fetching the manifest of ${formatReference(ref)}`,
    });
    if (res.status === 404) {
      await res.discard();
      throw this.notFound(ref);
    }
    await this.expectOk(res, ref, `fetching the manifest of ${formatReference(ref)}`);
    let bytes: Buffer;
    try {
      bytes = await res.buffer(MAX_MANIFEST_BYTES);
    } catch (e) {
      if (!(e instanceof BodyTooLarge)) throw this.unreachable(ref, res.url, `fetching the manifest of ${formatReference(ref)}`, e);
      throw new StrataError('UNSUPPORTED_MANIFEST', `the manifest of ${formatReference(ref)} is more than ${MAX_MANIFEST_BYTES} bytes, more than a manifest can sensibly be`, {
        hint: 'the registry returned something that is not a manifest',
      });
    }
    const header = res.header('docker-content-digest');
    const expected = ref.digest ?? (header && validateDigest(header) === undefined ? header : undefined);
    const digest = expected ? digestOf(expected, bytes) : digestOf('sha256:', bytes);
    if (expected && digest !== expected) {
      throw this.mismatch(ref, 'manifest', expected, digest);
    }
    if (expectedSize !== undefined && bytes.length !== expectedSize) {
      throw new StrataError('DIGEST_MISMATCH', `registry ${ref.registry} returned a ${bytes.length}-byte manifest for ${ref.repository}@${digest}, but the index says ${expectedSize} bytes`, {
        hint: 'the registry content is inconsistent; re-push the image',
      });
    }
    const mediaType = this.manifestMediaType(ref, bytes, contentType(res));
    return { digest, mediaType, bytes };
  }

  /** Tag -> digest with one HEAD; undefined when the tag (or digest) does not exist. */
  async headDigest(ref: ImageReference): Promise<string | undefined> {
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const res = await this.request(ref, {
      method: 'HEAD',
      path: `/v2/${ref.repository}/manifests/${reference}`,
      headers: { Accept: MANIFEST_ACCEPT.join(', ') },
      scopes: [pullScope(ref)],
      what: `checking ${formatReference(ref)}`,
    });
    await res.discard();
    if (res.status === 404) return undefined;
    await this.expectOk(res, ref, `checking ${formatReference(ref)}`);
    const header = res.header('docker-content-digest');
    if (header && validateDigest(header) === undefined) {
      if (ref.digest && header !== ref.digest) throw this.mismatch(ref, 'manifest', ref.digest, header);
      return header;
    }
    // Some registries omit the header on HEAD; the body tells us for certain.
    try {
      return (await this.getManifest(ref)).digest;
    } catch (e) {
      if (e instanceof StrataError && e.code === 'IMAGE_NOT_FOUND') return undefined;
      throw e;
    }
  }

  /** PUTs a manifest or index under a tag or digest; returns its digest (checked against the registry's). */
  async putManifest(repo: ImageReference, tagOrDigest: string, bytes: Buffer, mediaType: string): Promise<string> {
    const byDigest = tagOrDigest.includes(':');
    const digest = digestOf(byDigest ? tagOrDigest : 'sha256:', bytes);
    if (byDigest && digest !== tagOrDigest) {
      throw new StrataError('DIGEST_MISMATCH', `refusing to push a manifest as ${tagOrDigest}: its bytes hash to ${digest}`, {
        hint: 'this is a bug in the caller: the manifest bytes changed after their digest was computed',
      });
    }
    const name = `${repo.registry}/${repo.repository}${byDigest ? '@' : ':'}${tagOrDigest}`;
    const what = `pushing the manifest ${name}`;
    const res = await this.request(repo, {
      method: 'PUT',
      path: `/v2/${repo.repository}/manifests/${tagOrDigest}`,
      headers: { 'Content-Type': mediaType },
      body: () => bytes,
      scopes: [pushScope(repo)],
      what,
    });
    await this.expectOk(res, repo, what);
    await res.discard();
    const header = res.header('docker-content-digest');
    if (header && validateDigest(header) === undefined && digestAlgorithm(header) === digestAlgorithm(digest) && header !== digest) {
      throw new StrataError('DIGEST_MISMATCH', `registry ${repo.registry} stored the manifest for ${repo.repository} as ${header}, but its bytes hash to ${digest}`, {
        hint: 'the registry rewrote the manifest; it may not support this manifest media type',
      });
    }
    return digest;
  }

  /** Tags of a repository, following pagination. */
  async listTags(repo: ImageReference): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${repo.repository}/tags/list`;
    for (let page = 0; path && page < 1000; page++) {
      const res = await this.request(repo, { path, scopes: [pullScope(repo)], what: `listing the tags of ${repo.registry}/${repo.repository}` });
      if (res.status === 404) {
        await res.discard();
        return [];
      }
      await this.expectOk(res, repo, `listing the tags of ${repo.registry}/${repo.repository}`);
      const body = await res.json<{ tags?: string[] | null }>();
      tags.push(...(body.tags ?? []));
      const link = res.header('link');
      const m = link ? /<([^>]+)>;\s*rel="?next"?/.exec(link) : null;
      path = m ? m[1] : undefined;
    }
    return tags;
  }

  // ---- blobs --------------------------------------------------------------------------------

  /**
   * Streams a blob to `destFile`: written to a temp file beside it, hashed on the way, renamed into
   * place only when the digest matches. A mismatch removes the temp file and throws DIGEST_MISMATCH.
   */
  async fetchBlob(repo: ImageReference, digest: string, destFile: string): Promise<{ size: number }> {
    this.checkDigest(digest);
    await mkdir(dirname(destFile), { recursive: true });
    // Unique temp name (still ending in .tmp) so two processes fetching one blob never share a file.
    const tmp = `${destFile}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
    const source = await this.openVerified(repo, digest);
    try {
      await pipeline(source, createWriteStream(tmp, { flags: 'wx', highWaterMark: 1 << 20 }));
      await rename(tmp, destFile);
    } catch (e) {
      source.destroy();
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    return { size: source.size };
  }

  /**
   * A readable of the blob that errors (with DIGEST_MISMATCH) at its end if the bytes do not hash
   * to `digest`; consumers must not trust the data before the stream ends cleanly.
   */
  async openBlob(repo: ImageReference, digest: string): Promise<Readable> {
    this.checkDigest(digest);
    return this.openVerified(repo, digest);
  }

  private async openVerified(repo: ImageReference, digest: string): Promise<VerifyingStream> {
    const what = `fetching blob ${digest} from ${repo.registry}/${repo.repository}`;
    const res = await this.request(repo, { path: `/v2/${repo.repository}/blobs/${digest}`, scopes: [pullScope(repo)], what });
    if (res.status === 404) {
      await res.discard();
      throw new StrataError('BLOB_NOT_FOUND', `blob ${digest} not found in ${repo.registry}/${repo.repository}`, {
        hint: 'the image refers to a layer the registry no longer has; re-push the image or pull another tag',
      });
    }
    await this.expectOk(res, repo, what);
    const verifier = new VerifyingStream(digest, (actual) => this.mismatch(repo, 'blob', digest, actual));
    const body = res.body;
    body.on('error', (e) => verifier.destroy(new StrataError('REGISTRY_UNREACHABLE', `${what}: the connection failed mid-transfer: ${describeFetchError(e)}`, {
      hint: 'retry the build; the network or the registry dropped the transfer', cause: e,
    })));
    verifier.on('close', () => body.destroy());
    body.pipe(verifier);
    return verifier;
  }

  /** A small blob (a config) in memory, digest-verified. */
  async fetchBlobBytes(repo: ImageReference, digest: string, maxBytes = 64 * 1024 * 1024): Promise<Buffer> {
    const stream = await this.openBlob(repo, digest);
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of stream) {
      n += (c as Buffer).length;
      if (n > maxBytes) {
        stream.destroy();
        throw new StrataError('BLOB_TOO_LARGE', `blob ${digest} in ${repo.registry}/${repo.repository} is larger than ${maxBytes} bytes`, {
          hint: 'a config blob this large is not a real image config',
        });
      }
      chunks.push(c as Buffer);
    }
    return Buffer.concat(chunks);
  }

  async blobExists(repo: ImageReference, digest: string): Promise<boolean> {
    return this.headBlob(repo, digest, [pullScope(repo)]);
  }

  private async headBlob(repo: ImageReference, digest: string, scopes: string[]): Promise<boolean> {
    this.checkDigest(digest);
    const what = `checking blob ${digest} in ${repo.registry}/${repo.repository}`;
    const res = await this.request(repo, { method: 'HEAD', path: `/v2/${repo.repository}/blobs/${digest}`, scopes, what });
    await res.discard();
    if (res.status === 404) return false;
    await this.expectOk(res, repo, what);
    return true;
  }

  /**
   * Uploads a blob unless the repository has it: cross-repo mount when `mountFrom` is given, else
   * POST an upload session and PUT the whole blob to it with `?digest=`.
   */
  async pushBlob(repo: ImageReference, digest: string, size: number, source: BlobOpener, opts: PushBlobOptions = {}): Promise<PushBlobResult> {
    // Asking with the push scope up front means one token serves the whole upload.
    if (await this.headBlob(repo, digest, [pushScope(repo)])) return 'exists';
    const what = `pushing blob ${digest} to ${repo.registry}/${repo.repository}`;
    const from = opts.mountFrom;
    const scopes = [pushScope(repo)];
    let path = `/v2/${repo.repository}/blobs/uploads/`;
    if (from && from.registry === repo.registry && from.repository !== repo.repository) {
      path += `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from.repository)}`;
      scopes.push(pullScope(from));
    }
    const started = await this.request(repo, { method: 'POST', path, headers: { 'Content-Length': '0' }, body: () => Buffer.alloc(0), scopes, what });
    if (started.status === 201 && from) {
      await started.discard();
      return 'mounted';
    }
    if (started.status !== 202) await this.expectOk(started, repo, what);
    await started.discard();
    const location = started.header('location');
    if (!location) {
      throw new StrataError('REGISTRY_ERROR', `${what}: the registry started an upload but sent no Location`, { hint: 'the registry is misbehaving; retry' });
    }
    const url = new URL(location, registryBaseUrl(repo.registry, this.insecure) + '/');
    url.searchParams.set('digest', digest);
    const open = typeof source === 'string' ? () => createReadStream(source, { highWaterMark: 1 << 20 }) : source;
    const res = await this.request(repo, {
      method: 'PUT',
      url: url.toString(),
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) },
      body: open,
      scopes: [pushScope(repo)],
      what,
    });
    if (res.status === 400) {
      const text = await registryErrorText(res);
      throw new StrataError(text.includes('DIGEST_INVALID') ? 'DIGEST_MISMATCH' : 'REGISTRY_ERROR',
        `${what}: registry rejected the upload (${text || '400 Bad Request'})`, {
          hint: 'the local blob does not match its digest or size; the local store may be corrupt (prune it and rebuild)',
        });
    }
    await this.expectOk(res, repo, what);
    await res.discard();
    return 'uploaded';
  }

  // ---- plumbing -----------------------------------------------------------------------------

  private checkDigest(digest: string): void {
    const bad = validateDigest(digest);
    if (bad) throw new StrataError('INVALID_DIGEST', `invalid digest "${digest}": ${bad}`, { hint: 'digests look like sha256:<64 hex characters>' });
  }

  private manifestMediaType(ref: ImageReference, bytes: Buffer, header: string | undefined): string {
    let parsed: { mediaType?: unknown; schemaVersion?: unknown; manifests?: unknown; layers?: unknown; config?: unknown };
    try {
      parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
    } catch {
      throw new StrataError('UNSUPPORTED_MANIFEST', `the manifest of ${formatReference(ref)} is not JSON`, { hint: 'the registry returned something that is not an image manifest' });
    }
    const inBody = typeof parsed.mediaType === 'string' ? parsed.mediaType : undefined;
    let mt = inBody && (isIndexMediaType(inBody) || isManifestMediaType(inBody)) ? inBody : undefined;
    if (!mt && header && (isIndexMediaType(header) || isManifestMediaType(header))) mt = header;
    if (!mt && parsed.schemaVersion === 2) {
      if (Array.isArray(parsed.manifests)) mt = MediaTypes.ociIndex;
      else if (parsed.config && Array.isArray(parsed.layers)) mt = MediaTypes.ociManifest;
    }
    if (!mt) {
      const shown = inBody ?? header ?? `schemaVersion ${String(parsed.schemaVersion)}`;
      throw new StrataError('UNSUPPORTED_MANIFEST', `image ${formatReference(ref)} uses an unsupported manifest format (${shown})`, {
        hint: parsed.schemaVersion === 1 ? 'Docker schema 1 images are deprecated; re-push the image with a current Docker or skopeo' : 'strata reads OCI and Docker schema 2 manifests and indexes',
      });
    }
    return mt;
  }

  private notFound(ref: ImageReference): StrataError {
    return new StrataError('IMAGE_NOT_FOUND', `image ${formatReference(ref)} not found in registry`, {
      hint: `check the name and tag (list tags with \`skopeo list-tags docker://${ref.registry}/${ref.repository}\`), or push the image first`,
    });
  }

  private mismatch(ref: ImageReference, kind: 'blob' | 'manifest', expected: string, actual: string): StrataError {
    return new StrataError('DIGEST_MISMATCH', `${kind} from registry ${ref.registry}, repository ${ref.repository}: expected digest ${expected}, got ${actual}`, {
      hint: 'the registry served corrupted or substituted content; nothing was stored. Retry, and report it to the registry operator if it persists',
    });
  }

  private async expectOk(res: HttpResponse, ref: ImageReference, what: string): Promise<void> {
    if (res.ok) return;
    const text = await registryErrorText(res);
    const where = `${ref.registry}/${ref.repository}`;
    if (res.status === 401) {
      throw new StrataError('REGISTRY_UNAUTHORIZED', `${what}: registry ${ref.registry} requires authentication${text ? ` (${text})` : ''}`, {
        hint: `log in with \`docker login ${ref.registry}\` (strata reads ~/.docker/config.json or $DOCKER_CONFIG/config.json); check that the repository ${where} exists and your account can access it`,
      });
    }
    if (res.status === 403) {
      throw new StrataError('REGISTRY_DENIED', `${what}: registry ${ref.registry} denied access to ${where}${text ? ` (${text})` : ''}`, {
        hint: 'your credentials are valid but lack permission for this repository; check the account or the repository name',
      });
    }
    if (res.status === 404) {
      throw new StrataError('REGISTRY_NOT_FOUND', `${what}: ${where} not found${text ? ` (${text})` : ''}`, { hint: 'check the repository name' });
    }
    if (res.status === 429) {
      throw new StrataError('REGISTRY_RATE_LIMITED', `${what}: registry ${ref.registry} is rate limiting requests`, { hint: 'wait and retry, or log in to get a higher limit' });
    }
    throw new StrataError('REGISTRY_ERROR', `${what}: registry ${ref.registry} answered ${res.status} ${res.statusText}${text ? ` (${text})` : ''}`, {
      hint: res.status >= 500 ? 'the registry is failing; retry later' : 'the registry rejected the request; check the reference and your permissions',
    });
  }

  /** One HTTP exchange with auth: cached credentials up front, one retry after a 401 challenge. */
  private async request(ref: ImageReference, o: RequestOptions): Promise<HttpResponse> {
    const url = o.url ?? registryBaseUrl(ref.registry, this.insecure) + (o.path ?? '/v2/');
    const method = o.method ?? 'GET';
    // Reads are idempotent: a dropped connection or a server-side hiccup is retried twice. That
    // includes 500: a docker-registry answers it for a blob another client is committing at the
    // same moment (two CI jobs exporting one cache).
    const idempotent = method === 'GET' || method === 'HEAD';
    const send = async (authorization: string | undefined): Promise<HttpResponse> => {
      const headers: Record<string, string> = { 'User-Agent': this.userAgent, ...o.headers };
      if (authorization) headers.Authorization = authorization;
      for (let attempt = 0; ; attempt++) {
        const body = o.body?.();
        try {
          const res = await httpRequest(url, { method, headers, body });
          if (idempotent && attempt < 2 && RETRIED_STATUS.has(res.status)) {
            await res.discard();
            await sleep(200 * (attempt + 1));
            continue;
          }
          if (res.status === 401 && body instanceof Readable) body.destroy();
          return res;
        } catch (e) {
          if (body instanceof Readable) body.destroy();
          if (attempt < 2 && ((idempotent && isTransient(e)) || isStaleConnection(e))) {
            await sleep(isStaleConnection(e) ? 0 : 200 * (attempt + 1));
            continue;
          }
          throw this.unreachable(ref, url, o.what, e);
        }
      }
    };
    const first = await this.auth.cachedHeader(ref.registry, o.scopes);
    let res = await send(first);
    if (res.status !== 401) return res;
    const challenge = res.header('www-authenticate') ?? null;
    await res.discard();
    const header = await this.auth.onUnauthorized(ref.registry, o.scopes, challenge, first);
    if (header === undefined) {
      const creds = this.auth.credentialsFor(ref.registry);
      throw new StrataError('REGISTRY_UNAUTHORIZED', `${o.what}: registry ${ref.registry} requires authentication and ${creds ? 'the stored credentials do not fit its auth scheme' : 'no credentials for it are configured'}`, {
        hint: `log in with \`docker login ${ref.registry}\` (strata reads ~/.docker/config.json or $DOCKER_CONFIG/config.json)`,
      });
    }
    res = await send(header);
    return res;
  }

  private unreachable(ref: ImageReference, url: string, what: string, e: unknown): StrataError {
    const why = describeFetchError(e);
    const tlsTrouble = /EPROTO|wrong version number|SSL|certificate|self.signed/i.test(why);
    const hint = tlsTrouble
      ? (this.isPlainHttp(ref.registry)
        ? 'the registry seems to speak HTTPS; remove it from the insecure registries'
        : `the registry does not speak trusted HTTPS; if it is a plain-HTTP registry, list ${ref.registry} in the insecure registries`)
      : `check that the registry ${ref.registry} is running and reachable from this machine`;
    return new StrataError('REGISTRY_UNREACHABLE', `${what}: cannot reach registry ${ref.registry} at ${new URL(url).origin} (${why})`, { hint, cause: e });
  }
}

