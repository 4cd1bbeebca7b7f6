// Builders for the JSON blobs that make an image: config, manifest and index, each returned with its
// bytes and digest so callers store exactly what they hash.
import { sha256Digest } from '../registry/digest.js';
import { MediaTypes, type Descriptor, type Index, type Manifest, type Platform } from '../registry/media-types.js';
import { canonicalJson } from './canonical-json.js';
import type { ImageConfig } from './types.js';

export interface BuiltBlob {
  bytes: Buffer;
  digest: string;
  size: number;
  mediaType: string;
  /** The descriptor that points at this blob. */
  descriptor: Descriptor;
}

function built(bytes: Buffer, mediaType: string, extra: Partial<Descriptor> = {}): BuiltBlob {
  const digest = sha256Digest(bytes);
  return { bytes, digest, size: bytes.length, mediaType, descriptor: { mediaType, digest, size: bytes.length, ...extra } };
}

/** The config blob in canonical JSON (sorted keys), so equal configs always share a digest. */
export function buildConfigBlob(config: ImageConfig): BuiltBlob {
  return built(Buffer.from(canonicalJson(config), 'utf8'), MediaTypes.ociConfig);
}

/** Descriptor key order as the Go structs marshal it; stable because we build every object the same way. */
function orderedDescriptor(d: Descriptor): Descriptor {
  const o: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls?.length) o.urls = d.urls;
  if (d.annotations && Object.keys(d.annotations).length) o.annotations = sortedRecord(d.annotations);
  if (d.platform) o.platform = orderedPlatform(d.platform);
  if (d.artifactType) o.artifactType = d.artifactType;
  if (d.data) o.data = d.data;
  return o;
}

function orderedPlatform(p: Platform): Platform {
  const o: Platform = { architecture: p.architecture, os: p.os };
  if (p['os.version']) o['os.version'] = p['os.version'];
  if (p['os.features']?.length) o['os.features'] = p['os.features'];
  if (p.variant) o.variant = p.variant;
  return o;
}

function sortedRecord(r: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(r).sort().map((k) => [k, r[k]!]));
}

/** An OCI image manifest pointing at a config and layers. */
export function buildManifest(configDesc: Descriptor, layers: readonly Descriptor[], annotations?: Record<string, string>): BuiltBlob & { manifest: Manifest } {
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: orderedDescriptor(configDesc),
    layers: layers.map(orderedDescriptor),
  };
  if (annotations && Object.keys(annotations).length) manifest.annotations = sortedRecord(annotations);
  return { ...built(Buffer.from(JSON.stringify(manifest), 'utf8'), MediaTypes.ociManifest), manifest };
}

/** An OCI image index over per-platform manifests (give each descriptor its `platform`). */
export function buildIndex(manifests: readonly Descriptor[], annotations?: Record<string, string>): BuiltBlob & { index: Index } {
  const index: Index = { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: manifests.map(orderedDescriptor) };
  if (annotations && Object.keys(annotations).length) index.annotations = sortedRecord(annotations);
  return { ...built(Buffer.from(JSON.stringify(index), 'utf8'), MediaTypes.ociIndex), index };
}

/** The platform an image config describes, for index entries. */
export function platformOf(config: ImageConfig): Platform {
  const p: Platform = { architecture: config.architecture, os: config.os };
  if (config.variant) p.variant = config.variant;
  if (config['os.version']) p['os.version'] = config['os.version'];
  return p;
}
