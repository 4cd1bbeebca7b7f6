// OCI image layout directories (oci-layout, index.json, blobs/<alg>/<hex>): writing an image into one
// (merging with what is there) and reading an image back out of one, digests verified.
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { StrataError } from '../errors.js';
import { digestAlgorithm, digestHex, hasherFor } from '../registry/digest.js';
import { MediaTypes, isIndexMediaType, type Descriptor, type Index } from '../registry/media-types.js';
import { formatPlatform, selectPlatform, type PlatformSpec } from '../registry/platform.js';
import { validateDigest } from '../registry/reference.js';
import { checkImage, missingBlob, planExport, readBlob, type BlobSource, type ExportImage, type ExportTarget } from './image-data.js';
import { Annotations, declaredMediaType, parseIndex, parseManifest } from './types.js';

export const OCI_LAYOUT_FILE = JSON.stringify({ imageLayoutVersion: '1.0.0' });

export interface WriteLayoutOptions {
  /** Tag recorded as `org.opencontainers.image.ref.name` (skopeo's `oci:DIR:TAG`). An entry with the same name is replaced. */
  refName?: string;
  /** Full image name recorded as `io.containerd.image.name` (what containerd and BuildKit use). */
  imageName?: string;
  /** Copy blobs instead of hard-linking them from the source store. */
  copy?: boolean;
}

/** Blob file path inside a layout. */
export function layoutBlobPath(dir: string, digest: string): string {
  return join(dir, 'blobs', digestAlgorithm(digest), digestHex(digest));
}

/** A BlobSource over a layout directory. */
export function layoutBlobSource(dir: string): BlobSource {
  return { path: (digest: string) => layoutBlobPath(dir, digest) };
}

function tmpName(path: string): string {
  return `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
}

async function writeAtomic(path: string, data: Buffer | string): Promise<void> {
  const tmp = tmpName(path);
  await writeFile(tmp, data);
  await rename(tmp, path);
}

async function existsWithSize(path: string, size: number): Promise<boolean> {
  try {
    return (await stat(path)).size === size;
  } catch {
    return false;
  }
}

/** Puts a blob file into place: a hard link when the filesystem allows, else a copy. */
async function placeBlob(digest: string, src: string, dst: string, size: number, copy: boolean): Promise<void> {
  if (await existsWithSize(dst, size)) return;
  const tmp = tmpName(dst);
  try {
    if (copy) throw Object.assign(new Error('copy requested'), { code: 'EXDEV' });
    await link(src, tmp);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw missingBlob(digest, src, e);
    await copyFile(src, tmp).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOENT' ? missingBlob(digest, src, err) : err;
    });
  }
  await rename(tmp, dst);
}

async function readLayoutIndex(dir: string): Promise<Index | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, 'index.json'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const raw = JSON.parse(text) as Index;
    if (!Array.isArray(raw.manifests)) throw new Error('no manifests array');
    return raw;
  } catch (e) {
    throw new StrataError('INVALID_LAYOUT', `${join(dir, 'index.json')} is not a valid OCI index: ${(e as Error).message}`, {
      hint: 'point the export at an empty directory or repair the layout',
    });
  }
}

/**
 * Writes `image` (one manifest, or an index with its per-platform images) into the OCI layout at
 * `dir` (created if needed). An existing layout is merged: blobs are added, and the index entry
 * with the same ref name is replaced.
 */
export async function writeOciLayout(dir: string, image: ExportTarget, opts: WriteLayoutOptions = {}): Promise<Descriptor> {
  const plan = await planExport(image);
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });

  const existingLayout = await readFile(join(dir, 'oci-layout'), 'utf8').catch(() => undefined);
  if (existingLayout !== undefined) {
    let version: unknown;
    try {
      version = (JSON.parse(existingLayout) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch { /* reported below */ }
    if (typeof version !== 'string' || !version.startsWith('1.')) {
      throw new StrataError('INVALID_LAYOUT', `${dir} holds an OCI layout of unsupported version ${String(version)}`, {
        hint: 'export into an empty directory instead',
      });
    }
  } else {
    await writeAtomic(join(dir, 'oci-layout'), OCI_LAYOUT_FILE);
  }

  for (const blob of plan.blobs) {
    const dst = layoutBlobPath(dir, blob.digest);
    await mkdir(dirname(dst), { recursive: true });
    if (blob.file !== undefined) await placeBlob(blob.digest, blob.file, dst, blob.size, opts.copy ?? false);
    else if (!(await existsWithSize(dst, blob.size))) await writeAtomic(dst, blob.bytes!);
  }

  const annotations: Record<string, string> = {};
  if (opts.imageName) annotations[Annotations.containerdImageName] = opts.imageName;
  if (opts.refName) annotations[Annotations.refName] = opts.refName;
  const desc: Descriptor = { ...plan.top };
  if (Object.keys(annotations).length) desc.annotations = annotations;

  const index = (await readLayoutIndex(dir)) ?? { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [] };
  let manifests = index.manifests;
  if (opts.refName) {
    manifests = manifests.filter((d) => d.annotations?.[Annotations.refName] !== opts.refName);
  } else {
    // Without a name, an entry for the same digest that carries no name is the same entry.
    manifests = manifests.filter((d) => !(d.digest === desc.digest && !d.annotations?.[Annotations.refName]));
  }
  manifests.push(desc);
  const out: Index = { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests };
  if (index.annotations) out.annotations = index.annotations;
  await writeAtomic(join(dir, 'index.json'), JSON.stringify(out));
  return desc;
}

export interface LayoutImage extends ExportImage {
  /** Media type of the manifest as stored. */
  mediaType: string;
  /** Set when the name picked an index and a platform's manifest was chosen from it. */
  indexDigest?: string;
  /** The ref name of the chosen index.json entry, if it had one. */
  refName?: string;
  /** The layout directory. */
  dir: string;
}

export interface ReadLayoutOptions {
  /** Platform to pick from an index (default linux/<host arch>). */
  platform?: PlatformSpec;
  /** Hash every layer blob (default true); manifest and config are always checked. */
  verifyLayers?: boolean;
}

export function hostPlatform(): PlatformSpec {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

async function verifyFileDigest(path: string, digest: string, size: number): Promise<void> {
  const h = hasherFor(digest);
  let n = 0;
  try {
    for await (const chunk of createReadStream(path)) {
      h.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw missingBlob(digest, path, e);
    throw e;
  }
  const actual = `${digestAlgorithm(digest)}:${h.digest('hex')}`;
  if (actual !== digest || n !== size) {
    throw new StrataError('DIGEST_MISMATCH', `blob ${path} should be ${digest} (${size} bytes) but is ${actual} (${n} bytes)`, {
      hint: 'the OCI layout is corrupt; export it again',
    });
  }
}

/**
 * Reads one image out of an OCI layout, for `FROM oci-layout://DIR[:TAG]` and build contexts.
 * `tagOrDigest` is a ref name (`org.opencontainers.image.ref.name`) or `sha256:...`; when omitted the
 * layout must hold a single image (or one named `latest`).
 */
export async function readOciLayout(dir: string, tagOrDigest?: string, opts: ReadLayoutOptions = {}): Promise<LayoutImage> {
  const layoutText = await readFile(join(dir, 'oci-layout'), 'utf8').catch(() => undefined);
  if (layoutText === undefined) {
    throw new StrataError('INVALID_LAYOUT', `${dir} is not an OCI layout (no oci-layout file)`, {
      hint: 'export an image with `skopeo copy ... oci:DIR:TAG` or strata\'s OCI output, and point at that directory',
    });
  }
  const index = await readLayoutIndex(dir);
  if (!index) throw new StrataError('INVALID_LAYOUT', `${dir} is not an OCI layout (no index.json)`, { hint: 'the layout is incomplete; export it again' });

  const names = (): string => {
    const refs = index.manifests.map((d) => d.annotations?.[Annotations.refName]).filter((x): x is string => !!x);
    return refs.length ? `it holds: ${refs.join(', ')}` : `it holds ${index.manifests.length} unnamed image(s); refer to one by digest`;
  };
  let chosen: Descriptor | undefined;
  if (tagOrDigest !== undefined && tagOrDigest.includes(':') && validateDigest(tagOrDigest) === undefined) {
    chosen = index.manifests.find((d) => d.digest === tagOrDigest);
    if (!chosen) {
      // Any manifest blob in the layout may be addressed by digest, even if index.json does not list it.
      const bytes = await readBlob(layoutBlobSource(dir), tagOrDigest).catch(() => undefined);
      if (!bytes) throw new StrataError('IMAGE_NOT_FOUND', `OCI layout ${dir} has no image ${tagOrDigest}`, { hint: names() });
      chosen = { mediaType: declaredMediaType(bytes), digest: tagOrDigest, size: bytes.length };
    }
  } else if (tagOrDigest !== undefined) {
    const matches = index.manifests.filter((d) => d.annotations?.[Annotations.refName] === tagOrDigest ||
      d.annotations?.[Annotations.containerdImageName] === tagOrDigest);
    chosen = matches[matches.length - 1];
    if (!chosen) throw new StrataError('IMAGE_NOT_FOUND', `OCI layout ${dir} has no image tagged "${tagOrDigest}"`, { hint: names() });
  } else if (index.manifests.length === 1) {
    chosen = index.manifests[0];
  } else {
    chosen = index.manifests.find((d) => d.annotations?.[Annotations.refName] === 'latest');
    if (!chosen) {
      throw new StrataError('AMBIGUOUS_IMAGE', `OCI layout ${dir} holds ${index.manifests.length} images; say which one`, {
        hint: `use oci-layout://${dir}:TAG or oci-layout://${dir}@sha256:DIGEST; ${names()}`,
      });
    }
  }
  const refName = chosen!.annotations?.[Annotations.refName];
  const blobs = layoutBlobSource(dir);

  let desc = chosen!;
  let indexDigest: string | undefined;
  for (let depth = 0; ; depth++) {
    const bytes = await readBlob(blobs, desc.digest);
    const mediaType = isIndexMediaType(desc.mediaType) || isIndexMediaType(declaredMediaType(bytes)) ? MediaTypes.ociIndex : declaredMediaType(bytes);
    if (!isIndexMediaType(mediaType)) {
      const m = parseManifest(bytes);
      const raw = JSON.parse(bytes.toString('utf8')) as { layers: Descriptor[] };
      const config = await readBlob(blobs, m.config.digest);
      const image: LayoutImage = {
        blobs, dir, mediaType, manifest: bytes, manifestDigest: desc.digest, config, configDigest: m.config.digest, layers: raw.layers,
      };
      if (indexDigest) image.indexDigest = indexDigest;
      if (refName) image.refName = refName;
      if (opts.verifyLayers ?? true) {
        for (const l of image.layers) await verifyFileDigest(blobs.path(l.digest), l.digest, l.size);
      } else {
        await checkImage(image);
      }
      return image;
    }
    if (depth >= 4) throw new StrataError('INVALID_LAYOUT', `OCI layout ${dir}: indexes nest too deeply`, { hint: 'the layout is malformed' });
    indexDigest = desc.digest;
    const idx = parseIndex(bytes);
    const platform = opts.platform ?? hostPlatform();
    const pick = selectPlatform(idx.manifests, platform);
    if (!pick) {
      const have = idx.manifests.filter((d) => d.platform).map((d) => formatPlatform(d.platform!));
      throw new StrataError('PLATFORM_NOT_FOUND', `OCI layout ${dir} has no manifest for platform ${formatPlatform(platform)}`, {
        hint: have.length ? `it has: ${have.join(', ')}` : 'its index entries carry no platform',
      });
    }
    desc = pick;
  }
}

export interface OciLayoutReference {
  dir: string;
  tag?: string;
  digest?: string;
}

/**
 * Splits BuildKit's `oci-layout://DIR[:TAG][@sha256:DIGEST]` (the scheme is optional here). A ':'
 * counts as a tag separator only after the last '/', so `./a:b/layout` stays a directory.
 */
export function parseOciLayoutReference(s: string): OciLayoutReference {
  let rest = s.startsWith('oci-layout://') ? s.slice('oci-layout://'.length) : s;
  const bad = (why: string): StrataError => new StrataError('INVALID_REFERENCE', `invalid OCI layout reference "${s}": ${why}`, {
    hint: 'write oci-layout://DIR, oci-layout://DIR:TAG or oci-layout://DIR@sha256:DIGEST',
  });
  const out: OciLayoutReference = { dir: '' };
  const at = rest.lastIndexOf('@');
  if (at >= 0 && rest.slice(at + 1).includes(':')) {
    const digest = rest.slice(at + 1);
    const why = validateDigest(digest);
    if (why) throw bad(why);
    out.digest = digest;
    rest = rest.slice(0, at);
  }
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/') && colon >= 0) {
    const tag = rest.slice(colon + 1);
    if (!/^[\w][\w.-]{0,127}$/.test(tag)) throw bad(`bad tag "${tag}"`);
    out.tag = tag;
    rest = rest.slice(0, colon);
  }
  if (rest === '') throw bad('the directory is missing');
  out.dir = rest;
  return out;
}
