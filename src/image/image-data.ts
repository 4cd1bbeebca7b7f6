// What every exporter takes: an image as its manifest and config bytes plus a BlobSource that
// knows where the layer blobs sit on disk (the caller's content store, or an OCI layout).
import { readFile, stat } from 'node:fs/promises';
import { StrataError } from '../errors.js';
import { digestOf, sha256Digest } from '../registry/digest.js';
import type { Descriptor } from '../registry/media-types.js';
import { declaredMediaType, parseImageConfig, parseManifest } from './types.js';

/** Blobs are files named by digest in a store the caller owns; `path` says where one lives. */
export interface BlobSource {
  path(digest: string): string;
}

export interface ImageData {
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDigest: string;
  /** The manifest's layer descriptors, in order (media types as the manifest states them). */
  layers: Descriptor[];
}

export interface ExportImage extends ImageData {
  blobs: BlobSource;
}

/** Builds the exporter input from manifest bytes, reading the config blob from `blobs`. */
export async function imageFromManifest(blobs: BlobSource, manifest: Buffer): Promise<ExportImage> {
  const m = parseManifest(manifest);
  const raw = JSON.parse(manifest.toString('utf8')) as { layers: Descriptor[] };
  const config = await readBlob(blobs, m.config.digest);
  return {
    blobs,
    manifest,
    manifestDigest: sha256Digest(manifest),
    config,
    configDigest: m.config.digest,
    layers: raw.layers,
  };
}

/** Reads a small blob and checks it against its digest. */
export async function readBlob(blobs: BlobSource, digest: string): Promise<Buffer> {
  const path = blobs.path(digest);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw missingBlob(digest, path, e);
  }
  const actual = digestOf(digest, bytes);
  if (actual !== digest) {
    throw new StrataError('DIGEST_MISMATCH', `blob ${path} should have digest ${digest} but has ${actual}`, {
      hint: 'the local store is corrupt; prune it and build again',
    });
  }
  return bytes;
}

export function missingBlob(digest: string, path: string, cause?: unknown): StrataError {
  return new StrataError('BLOB_MISSING', `blob ${digest} is missing (expected at ${path})`, {
    hint: 'the local store lost a layer; prune the cache and build again', cause,
  });
}

/** Checks the parts agree: digests of the in-memory bytes, layer files present with the right sizes. */
export async function checkImage(image: ExportImage): Promise<void> {
  if (digestOf(image.manifestDigest, image.manifest) !== image.manifestDigest) {
    throw new StrataError('DIGEST_MISMATCH', `manifest bytes do not hash to ${image.manifestDigest}`, { hint: 'this is a bug in the caller' });
  }
  if (digestOf(image.configDigest, image.config) !== image.configDigest) {
    throw new StrataError('DIGEST_MISMATCH', `config bytes do not hash to ${image.configDigest}`, { hint: 'this is a bug in the caller' });
  }
  for (const layer of image.layers) {
    const path = image.blobs.path(layer.digest);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (e) {
      throw missingBlob(layer.digest, path, e);
    }
    if (size !== layer.size) {
      throw new StrataError('DIGEST_MISMATCH', `layer ${layer.digest} at ${path} is ${size} bytes, the manifest says ${layer.size}`, {
        hint: 'the local store is corrupt; prune it and build again',
      });
    }
  }
}

export function manifestMediaType(image: ImageData): string {
  return declaredMediaType(image.manifest);
}

/** The image's creation time as a Date (for tar mtimes), or the epoch when unknown. */
export function imageCreated(image: Pick<ImageData, 'config'>): Date {
  try {
    const created = parseImageConfig(image.config).created;
    const t = created ? Date.parse(created) : NaN;
    return Number.isFinite(t) ? new Date(t) : new Date(0);
  } catch {
    return new Date(0);
  }
}

/** A multi-platform image: an index plus every manifest it lists. */
export interface ExportIndex {
  index: Buffer;
  indexDigest: string;
  images: ExportImage[];
}

/** What the OCI exporters and push accept. */
export type ExportTarget = ExportImage | ExportIndex;

export function isExportIndex(t: ExportTarget): t is ExportIndex {
  return (t as ExportIndex).index !== undefined && Array.isArray((t as ExportIndex).images);
}

/** One blob an exporter has to write: a file from a store, or bytes in memory. */
export interface PlannedBlob {
  digest: string;
  size: number;
  file?: string;
  bytes?: Buffer;
}

/**
 * Every blob of the target once, in dependency order (layers, configs, manifests, index), and the
 * descriptor of its top object. Checks the parts first (see checkImage).
 */
export async function planExport(t: ExportTarget): Promise<{ top: Descriptor; blobs: PlannedBlob[] }> {
  const images = isExportIndex(t) ? t.images : [t];
  for (const img of images) await checkImage(img);
  const seen = new Set<string>();
  const blobs: PlannedBlob[] = [];
  const add = (b: PlannedBlob): void => {
    if (seen.has(b.digest)) return;
    seen.add(b.digest);
    blobs.push(b);
  };
  for (const img of images) for (const l of img.layers) add({ digest: l.digest, size: l.size, file: img.blobs.path(l.digest) });
  for (const img of images) add({ digest: img.configDigest, size: img.config.length, bytes: img.config });
  for (const img of images) add({ digest: img.manifestDigest, size: img.manifest.length, bytes: img.manifest });
  if (!isExportIndex(t)) {
    return { top: { mediaType: declaredMediaType(t.manifest), digest: t.manifestDigest, size: t.manifest.length }, blobs };
  }
  if (digestOf(t.indexDigest, t.index) !== t.indexDigest) {
    throw new StrataError('DIGEST_MISMATCH', `index bytes do not hash to ${t.indexDigest}`, { hint: 'this is a bug in the caller' });
  }
  const listed = (JSON.parse(t.index.toString('utf8')) as { manifests?: Descriptor[] }).manifests ?? [];
  for (const d of listed) {
    if (!seen.has(d.digest)) {
      throw new StrataError('INVALID_IMAGE', `the index lists manifest ${d.digest} but no image for it was given`, { hint: 'this is a bug in the caller' });
    }
  }
  add({ digest: t.indexDigest, size: t.index.length, bytes: t.index });
  return { top: { mediaType: declaredMediaType(t.index), digest: t.indexDigest, size: t.index.length }, blobs };
}
