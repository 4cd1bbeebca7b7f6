// OCI image-spec shapes (config, manifest, index, descriptor) and the readers that take whatever a
// registry or layout hands us - OCI or Docker schema 2 - and return the OCI-equivalent shape. Field
// names follow the specs exactly (PascalCase inside `config`, as Docker writes it), so the JSON we
// read and write needs no renaming.
import { StrataError } from '../errors.js';
import { MediaTypes, type Descriptor, type Index, type Manifest } from '../registry/media-types.js';

export { MediaTypes, isIndexMediaType, isManifestMediaType } from '../registry/media-types.js';
export type { Descriptor, Index, Manifest, Platform, MediaType } from '../registry/media-types.js';

/** Docker's HEALTHCHECK, durations in nanoseconds. */
export interface HealthConfig {
  /** `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "cmd"]`. */
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

/** The `config` object of an image config: how to run a container from the image. */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  Volumes?: Record<string, Record<string, never>>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  /** Docker extension: set when Cmd/Entrypoint were written in shell form on Windows. */
  ArgsEscaped?: boolean;
  /** Docker extension (HEALTHCHECK). */
  Healthcheck?: HealthConfig;
  /** Docker extension (SHELL). */
  Shell?: string[];
  /** Docker extension (ONBUILD): instructions run when the image is used as a base. */
  OnBuild?: string[];
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface RootFS {
  type: 'layers';
  diff_ids: string[];
}

/** The image config blob (application/vnd.oci.image.config.v1+json). */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
  config?: ContainerConfig;
  rootfs: RootFS;
  history?: HistoryEntry[];
}

const CONTAINER_CONFIG_KEYS: ReadonlyArray<keyof ContainerConfig> = [
  'User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal',
  'ArgsEscaped', 'Healthcheck', 'Shell', 'OnBuild',
];

function badConfig(why: string): StrataError {
  return new StrataError('INVALID_IMAGE', `invalid image config: ${why}`, {
    hint: 'the image was produced by a broken tool; rebuild or re-push it',
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function stringArray(v: unknown, field: string): string[] | undefined {
  if (v === null || v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw badConfig(`${field} must be an array of strings`);
  return v as string[];
}

function parseJsonObject(bytes: Buffer | string, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch (e) {
    throw new StrataError('INVALID_IMAGE', `${what} is not valid JSON: ${(e as Error).message}`, {
      hint: 'the image was produced by a broken tool; rebuild or re-push it',
    });
  }
  if (!isObject(parsed)) throw new StrataError('INVALID_IMAGE', `${what} is not a JSON object`, { hint: 'the image is corrupt' });
  return parsed;
}

/**
 * Reads an OCI or Docker image config. Docker's extras (`container_config`, `docker_version`,
 * `Hostname`, ...) are dropped and `null`s become absent fields, as BuildKit does when it builds on
 * an image.
 */
export function parseImageConfig(bytes: Buffer | string): ImageConfig {
  const raw = parseJsonObject(bytes, 'image config');
  const rootfs = raw.rootfs;
  if (!isObject(rootfs)) throw badConfig('rootfs is missing');
  const diffIds = stringArray(rootfs.diff_ids, 'rootfs.diff_ids') ?? [];
  const out: ImageConfig = {
    architecture: typeof raw.architecture === 'string' ? raw.architecture : '',
    os: typeof raw.os === 'string' ? raw.os : '',
    rootfs: { type: 'layers', diff_ids: diffIds },
  };
  if (typeof raw.created === 'string') out.created = raw.created;
  if (typeof raw.author === 'string' && raw.author !== '') out.author = raw.author;
  if (typeof raw.variant === 'string' && raw.variant !== '') out.variant = raw.variant;
  if (typeof raw['os.version'] === 'string' && raw['os.version'] !== '') out['os.version'] = raw['os.version'];
  const osFeatures = stringArray(raw['os.features'], 'os.features');
  if (osFeatures?.length) out['os.features'] = osFeatures;

  if (isObject(raw.config)) {
    const src = raw.config;
    const cfg: ContainerConfig = {};
    for (const key of CONTAINER_CONFIG_KEYS) {
      const v = src[key];
      if (v === null || v === undefined) continue;
      switch (key) {
        case 'Env': case 'Entrypoint': case 'Cmd': case 'Shell': case 'OnBuild':
          cfg[key] = stringArray(v, `config.${key}`);
          break;
        case 'User': case 'WorkingDir': case 'StopSignal':
          if (typeof v !== 'string') throw badConfig(`config.${key} must be a string`);
          if (v !== '') cfg[key] = v;
          break;
        case 'ArgsEscaped':
          if (v === true) cfg.ArgsEscaped = true;
          break;
        case 'Labels':
          if (!isObject(v)) throw badConfig('config.Labels must be an object');
          cfg.Labels = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)]));
          break;
        case 'ExposedPorts': case 'Volumes':
          if (!isObject(v)) throw badConfig(`config.${key} must be an object`);
          cfg[key] = Object.fromEntries(Object.keys(v).map((k) => [k, {}]));
          break;
        case 'Healthcheck':
          if (!isObject(v)) throw badConfig('config.Healthcheck must be an object');
          cfg.Healthcheck = parseHealthcheck(v);
          break;
      }
    }
    out.config = cfg;
  }
  if (Array.isArray(raw.history)) {
    out.history = raw.history.filter(isObject).map((h) => {
      const e: HistoryEntry = {};
      if (typeof h.created === 'string') e.created = h.created;
      if (typeof h.created_by === 'string') e.created_by = h.created_by;
      if (typeof h.author === 'string') e.author = h.author;
      if (typeof h.comment === 'string') e.comment = h.comment;
      if (h.empty_layer === true) e.empty_layer = true;
      return e;
    });
  }
  return out;
}

function parseHealthcheck(v: Record<string, unknown>): HealthConfig {
  const h: HealthConfig = {};
  const test = stringArray(v.Test, 'config.Healthcheck.Test');
  if (test) h.Test = test;
  for (const k of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'] as const) {
    if (typeof v[k] === 'number' && v[k] !== 0) h[k] = v[k] as number;
  }
  return h;
}

/** Docker schema 2 media types -> their OCI equivalents; others pass through. */
export function toOciMediaType(mt: string): string {
  switch (mt) {
    case MediaTypes.dockerManifest: return MediaTypes.ociManifest;
    case MediaTypes.dockerManifestList: return MediaTypes.ociIndex;
    case MediaTypes.dockerConfig: return MediaTypes.ociConfig;
    case MediaTypes.dockerLayerGzip: return MediaTypes.ociLayerGzip;
    case MediaTypes.dockerLayer: return MediaTypes.ociLayer;
    case MediaTypes.dockerForeignLayerGzip: return MediaTypes.ociLayerNondistributableGzip;
    default: return mt;
  }
}

export type LayerCompression = 'gzip' | 'zstd' | 'none';

/** How a layer blob is compressed, judged by its media type. */
export function layerCompression(mediaType: string): LayerCompression {
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.tar.gzip') || mediaType.endsWith('tar.gz')) return 'gzip';
  if (mediaType.endsWith('+zstd')) return 'zstd';
  return 'none';
}

function parseDescriptor(v: unknown, where: string): Descriptor {
  if (!isObject(v) || typeof v.digest !== 'string' || typeof v.size !== 'number' || typeof v.mediaType !== 'string') {
    throw new StrataError('INVALID_IMAGE', `${where} is not a valid descriptor (needs mediaType, digest, size)`, { hint: 'the image is corrupt' });
  }
  return v as unknown as Descriptor;
}

/**
 * Reads an image manifest and returns it in OCI terms (Docker media types mapped to OCI ones).
 * Keep the original bytes for digests; this shape is for looking inside.
 */
export function parseManifest(bytes: Buffer | string): Manifest {
  const raw = parseJsonObject(bytes, 'image manifest');
  if (raw.schemaVersion !== 2) {
    throw new StrataError('UNSUPPORTED_MANIFEST', `image manifest has schemaVersion ${String(raw.schemaVersion)}, expected 2`, {
      hint: 'Docker schema 1 images are not supported; re-push the image with a current tool',
    });
  }
  if (!Array.isArray(raw.layers)) throw new StrataError('INVALID_IMAGE', 'image manifest has no layers array (is it an index?)', { hint: 'the image is corrupt' });
  const config = parseDescriptor(raw.config, 'manifest config');
  const layers = raw.layers.map((l, i) => parseDescriptor(l, `manifest layer ${i}`));
  const m: Manifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { ...config, mediaType: toOciMediaType(config.mediaType) },
    layers: layers.map((l) => ({ ...l, mediaType: toOciMediaType(l.mediaType) })),
  };
  if (typeof raw.artifactType === 'string') m.artifactType = raw.artifactType;
  if (isObject(raw.subject)) m.subject = parseDescriptor(raw.subject, 'manifest subject');
  if (isObject(raw.annotations)) m.annotations = raw.annotations as Record<string, string>;
  return m;
}

/** Reads an OCI index or Docker manifest list, media types mapped to OCI. */
export function parseIndex(bytes: Buffer | string): Index {
  const raw = parseJsonObject(bytes, 'image index');
  if (!Array.isArray(raw.manifests)) throw new StrataError('INVALID_IMAGE', 'image index has no manifests array', { hint: 'the index is corrupt' });
  const idx: Index = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: raw.manifests.map((d, i) => {
      const desc = parseDescriptor(d, `index entry ${i}`);
      return { ...desc, mediaType: toOciMediaType(desc.mediaType) };
    }),
  };
  if (isObject(raw.annotations)) idx.annotations = raw.annotations as Record<string, string>;
  return idx;
}

/** The media type a manifest/index declares, or the one its shape implies. */
export function declaredMediaType(bytes: Buffer | string): string {
  const raw = parseJsonObject(bytes, 'manifest');
  if (typeof raw.mediaType === 'string' && raw.mediaType !== '') return raw.mediaType;
  return Array.isArray(raw.manifests) ? MediaTypes.ociIndex : MediaTypes.ociManifest;
}

export const Annotations = {
  refName: 'org.opencontainers.image.ref.name',
  containerdImageName: 'io.containerd.image.name',
  created: 'org.opencontainers.image.created',
} as const;
