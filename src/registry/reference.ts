// Image references as Docker spells them, normalized the way `docker pull` does: a bare name lives on
// Docker Hub under `library/`, a missing tag means `latest` (unless a digest pins the image).
// Grammar facts follow distribution/reference: lowercase path components, optional host[:port]
// (or [IPv6]:port) first component, tag up to 128 chars, `algo:hex` digests.
import { StrataError } from '../errors.js';

export interface ImageReference {
  /** Registry host as written (port included), `docker.io` for Docker Hub. */
  registry: string;
  /** Repository path, e.g. `library/busybox`. */
  repository: string;
  tag?: string;
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$/;
const HEX64 = /^[a-f0-9]{64}$/;
const MAX_NAME = 255;

const REFERENCE_HINT = 'write references as [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. busybox:1.36 or localhost:5000/app:dev';

function invalid(input: string, why: string, hint = REFERENCE_HINT): StrataError {
  return new StrataError('INVALID_REFERENCE', `invalid image reference "${input}": ${why}`, { hint });
}

/** Checks `sha256:<64 lowercase hex>` (and the general algo:hex shape for other algorithms). */
export function validateDigest(digest: string): string | undefined {
  if (!DIGEST.test(digest)) return 'a digest looks like sha256: followed by 64 hex characters';
  const [algo, hex] = digest.split(':') as [string, string];
  if (algo === 'sha256' && !HEX64.test(hex)) return 'a sha256 digest has exactly 64 lowercase hex characters';
  if (algo === 'sha512' && !/^[a-f0-9]{128}$/.test(hex)) return 'a sha512 digest has exactly 128 lowercase hex characters';
  return undefined;
}

export function parseReference(input: string): ImageReference {
  const s = input.trim();
  if (s === '') throw invalid(input, 'it is empty');
  if (/\s/.test(s)) throw invalid(input, 'it contains whitespace');

  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const bad = validateDigest(digest);
    if (bad) throw invalid(input, `bad digest "${digest}": ${bad}`);
  }

  let tag: string | undefined;
  // A tag follows the last ':' that comes after the last '/', so `host:5000/x` keeps its port.
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.indexOf(':', lastSlash + 1);
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      throw invalid(input, tag === '' ? 'the tag after ":" is empty' :
        `bad tag "${tag.length > 40 ? tag.slice(0, 40) + '...' : tag}": tags are 1-128 of [A-Za-z0-9_.-] and do not start with "." or "-"`);
    }
  }
  if (rest === '') throw invalid(input, 'the repository name is missing');

  let registry = DOCKER_HUB;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    // Docker's rule: the first component is a host when it has a '.' or ':', is "localhost",
    // or has uppercase letters (repository paths never do).
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      if (!DOMAIN.test(first)) throw invalid(input, `bad registry host "${first}"`);
      registry = first;
      path = rest.slice(slash + 1);
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;

  if (path === '') throw invalid(input, 'the repository name is missing');
  if (path !== path.toLowerCase()) {
    throw invalid(input, 'repository names must be lowercase', `use "${input.replace(path, path.toLowerCase())}"`);
  }
  for (const comp of path.split('/')) {
    if (comp === '') throw invalid(input, 'the repository path has an empty component ("//" or a trailing "/")');
    if (!PATH_COMPONENT.test(comp)) {
      throw invalid(input, `bad repository path component "${comp}": use lowercase letters, digits and single separators (".", "_", "__", "-") between them`);
    }
  }
  if (registry === DOCKER_HUB && HEX64.test(path)) {
    throw invalid(input, 'a 64-character hex string is an image ID, not a repository name',
      'refer to an image by digest as NAME@sha256:HEX');
  }
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  if (path.length + (registry === DOCKER_HUB ? 0 : registry.length + 1) > MAX_NAME) {
    throw invalid(input, `the name is longer than ${MAX_NAME} characters`);
  }
  if (tag === undefined && digest === undefined) tag = 'latest';
  const ref: ImageReference = { registry, repository: path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** Fully qualified form: `docker.io/library/busybox:latest`, `host:5000/a/b:tag@sha256:...`. */
export function formatReference(ref: ImageReference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The short form `docker` prints: `busybox:latest`, `user/app:1`, `localhost:5000/x:dev`. */
export function familiarReference(ref: ImageReference): string {
  let name = `${ref.registry}/${ref.repository}`;
  if (ref.registry === DOCKER_HUB) {
    name = ref.repository.startsWith('library/') && ref.repository.split('/').length === 2
      ? ref.repository.slice('library/'.length) : ref.repository;
  }
  if (ref.tag !== undefined) name += `:${ref.tag}`;
  if (ref.digest !== undefined) name += `@${ref.digest}`;
  return name;
}

/** `registry/repository`, the unit auth scopes and blob mounts work on. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The same repository with another tag or digest. */
export function withTag(ref: ImageReference, tag: string): ImageReference {
  return { registry: ref.registry, repository: ref.repository, tag };
}

export function withDigest(ref: ImageReference, digest: string): ImageReference {
  return { registry: ref.registry, repository: ref.repository, digest };
}

/** Host (without port) of a registry string, brackets stripped for IPv6. */
export function registryHostname(registry: string): string {
  if (registry.startsWith('[')) {
    const end = registry.indexOf(']');
    return registry.slice(1, end < 0 ? undefined : end);
  }
  const colon = registry.lastIndexOf(':');
  return colon >= 0 ? registry.slice(0, colon) : registry;
}

function ipv4InCidr(ip: string, cidr: string): boolean {
  const [net, bitsStr] = cidr.split('/');
  const bits = Number(bitsStr);
  const toNum = (a: string): number | undefined => {
    const parts = a.split('.');
    if (parts.length !== 4) return undefined;
    let n = 0;
    for (const p of parts) {
      if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
      n = n * 256 + Number(p);
    }
    return n;
  };
  const a = toNum(ip);
  const b = net === undefined ? undefined : toNum(net);
  if (a === undefined || b === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) return false;
  const size = 2 ** (32 - bits);
  return Math.floor(a / size) === Math.floor(b / size);
}

/** Loopback registries are always reachable over plain HTTP, as Docker allows. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registryHostname(registry).toLowerCase();
  return host === 'localhost' || host === '::1' || ipv4InCidr(host, '127.0.0.0/8');
}

/**
 * Plain-HTTP policy: loopback always; any other host only when `insecureRegistries` lists it as
 * `host:port`, `host` (any port) or an IPv4 CIDR. Everything else speaks HTTPS with verification.
 */
export function allowsPlainHttp(registry: string, insecureRegistries: readonly string[] = []): boolean {
  if (isLoopbackRegistry(registry)) return true;
  const host = registryHostname(registry).toLowerCase();
  for (const raw of insecureRegistries) {
    const entry = raw.trim().toLowerCase().replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '');
    if (entry === registry.toLowerCase() || entry === host) return true;
    if (entry.includes('/') && ipv4InCidr(host, entry)) return true;
  }
  return false;
}

/** Base URL of the registry API host (Docker Hub's API lives at registry-1.docker.io). */
export function registryBaseUrl(registry: string, insecureRegistries: readonly string[] = []): string {
  const host = registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
  return `${allowsPlainHttp(registry, insecureRegistries) ? 'http' : 'https'}://${host}`;
}
