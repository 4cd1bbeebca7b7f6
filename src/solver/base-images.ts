// Base images: a name resolves to a manifest (strata's own images first, as Buildah does, then the
// registry, or an OCI layout on disk); layers are fetched, verified and unpacked into the store once.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { StrataError } from '../errors.js';
import type { Store, LayerInfo } from '../cache/store.js';
import type { BaseImageInfo, HistoryEntry, RuntimeConfig } from '../graph/config.js';
import type { SourceOp } from '../graph/ops.js';
import { RegistryClient } from '../registry/client.js';
import { parseReference, formatReference, familiarReference, type ImageReference } from '../registry/reference.js';

export interface ResolvedImage {
  /** What the user wrote, normalised (`localhost:5000/busybox:latest`). */
  name: string;
  manifestDigest: string;
  configDigest: string;
  layers: { digest: string; size: number; mediaType: string }[];
  diffIds: string[];
  config: { config?: RuntimeConfig; history?: HistoryEntry[]; author?: string; rootfs?: { diff_ids?: string[] } };
  /** Where layers come from when they are not in the store yet. */
  origin: { kind: 'store' } | { kind: 'registry'; ref: ImageReference } | { kind: 'layout'; dir: string; blobPath: (d: string) => string };
}

export interface BaseImageOptions {
  pull: boolean;
  insecureRegistries: string[];
  warn(msg: string): void;
}

interface ManifestJson {
  config: { digest: string; mediaType: string; size: number };
  layers: { digest: string; size: number; mediaType: string }[];
}

export class BaseImages {
  private readonly resolved = new Map<string, Promise<ResolvedImage>>();
  private readonly pulls = new Map<string, Promise<LayerInfo>>();
  readonly client: RegistryClient;

  constructor(
    private readonly store: Store,
    private readonly opts: BaseImageOptions,
  ) {
    this.client = new RegistryClient({ insecureRegistries: opts.insecureRegistries });
  }

  resolve(op: Exclude<SourceOp, { kind: 'scratch' }>): Promise<ResolvedImage> {
    const key = JSON.stringify(op);
    let p = this.resolved.get(key);
    if (!p) {
      p = op.kind === 'image' ? this.resolveImage(op.ref) : this.resolveLayout(op.dir, op.ref);
      this.resolved.set(key, p);
    }
    return p;
  }

  async info(op: Exclude<SourceOp, { kind: 'scratch' }>): Promise<BaseImageInfo> {
    const r = await this.resolve(op);
    return { config: r.config.config ?? {}, history: r.config.history ?? [], diffIds: r.diffIds, author: r.config.author };
  }

  private async fromManifestBytes(name: string, manifestDigest: string, manifest: Buffer, origin: ResolvedImage['origin'], fetchConfig: (d: string) => Promise<Buffer>): Promise<ResolvedImage> {
    const m = JSON.parse(manifest.toString('utf8')) as ManifestJson;
    if (!m.config || !Array.isArray(m.layers)) {
      throw new StrataError('BAD_MANIFEST', `${name}: manifest ${manifestDigest} is not an image manifest`);
    }
    let configBytes: Buffer;
    if (this.store.hasBlob(m.config.digest)) configBytes = await this.store.readBlob(m.config.digest);
    else {
      configBytes = await fetchConfig(m.config.digest);
      await this.store.putBlob(configBytes, m.config.mediaType);
    }
    const config = JSON.parse(configBytes.toString('utf8')) as ResolvedImage['config'];
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== m.layers.length) {
      throw new StrataError('BAD_IMAGE', `${name}: config lists ${diffIds.length} layers but the manifest has ${m.layers.length}`);
    }
    return { name, manifestDigest, configDigest: m.config.digest, layers: m.layers, diffIds, config, origin };
  }

  private localImage(ref: string): { name: string; manifestDigest: string } | undefined {
    const candidates = [ref];
    try {
      const p = parseReference(ref);
      candidates.push(formatReference(p), familiarReference(p));
    } catch {
      // Not a valid registry reference: only the literal name can match.
    }
    for (const c of candidates) {
      const img = this.store.image(c);
      if (img && this.store.hasBlob(img.manifestDigest)) return { name: c, manifestDigest: img.manifestDigest };
    }
    return undefined;
  }

  private async resolveImage(refText: string): Promise<ResolvedImage> {
    const local = this.opts.pull ? undefined : this.localImage(refText);
    if (local) {
      const bytes = await this.store.readBlob(local.manifestDigest);
      return this.fromManifestBytes(local.name, local.manifestDigest, bytes, { kind: 'store' }, async (d) => this.store.readBlob(d));
    }
    const ref = parseReference(refText);
    const name = formatReference(ref);
    let digest: string;
    let manifest: Buffer;
    if (ref.digest && this.store.hasBlob(ref.digest)) {
      digest = ref.digest;
      manifest = await this.store.readBlob(digest);
    } else {
      try {
        // A HEAD request tells whether the tag still points where it did; only then is the
        // manifest (or index) fetched again.
        const last = this.store.resolution(name);
        const head = last?.headDigest && this.store.hasBlob(last.digest) ? await this.client.headDigest(ref) : undefined;
        if (head && last && head === last.headDigest) {
          digest = last.digest;
          manifest = await this.store.readBlob(digest);
          this.store.setResolution(name, digest, head);
        } else {
          const r = await this.client.resolve(ref);
          digest = r.digest;
          manifest = r.manifest;
          await this.store.putBlob(manifest, r.mediaType);
          this.store.setResolution(name, digest, r.indexDigest ?? r.digest);
        }
      } catch (e) {
        const last = this.store.resolution(name);
        const unreachable = e instanceof StrataError && /UNREACHABLE|NETWORK|CONNECT/i.test(e.code);
        if (last && unreachable && this.store.hasBlob(last.digest)) {
          this.opts.warn(`${name}: registry unreachable, using the last resolution ${last.digest} from ${new Date(last.resolvedAt).toISOString()}`);
          digest = last.digest;
          manifest = await this.store.readBlob(digest);
        } else throw e;
      }
    }
    return this.fromManifestBytes(name, digest, manifest, { kind: 'registry', ref }, (d) => this.client.fetchBlobBytes(ref, d));
  }

  private async resolveLayout(dir: string, ref?: string): Promise<ResolvedImage> {
    // Layer blobs are verified when (and if) a step needs them, not on every build.
    const { readOciLayout } = await import('../image/oci-layout.js');
    const img = await readOciLayout(dir, ref, { verifyLayers: false });
    await this.store.putBlob(img.manifest, 'application/vnd.oci.image.manifest.v1+json');
    const blobPath = (d: string) => img.blobs.path(d);
    return this.fromManifestBytes(`oci-layout://${dir}${ref ? ':' + ref : ''}`, img.manifestDigest, img.manifest, { kind: 'layout', dir, blobPath }, async () => img.config);
  }

  /**
   * The image's layer chain without fetching anything: layers not in the store are recorded with
   * where to fetch them from, and the solver's materializer pulls them only if a step needs them.
   */
  declareLayers(img: ResolvedImage): LayerInfo[] {
    const o = img.origin;
    // `image` marks a base image's layer: its failures are the image's, not a corrupt cache's.
    const source = o.kind === 'registry' ? { kind: 'registry', ref: formatReference({ ...o.ref, tag: undefined, digest: img.manifestDigest }), image: img.name } : o.kind === 'layout' ? { kind: 'local', dir: o.dir, image: img.name } : undefined;
    const insLayer = this.store.db.prepare(
      'INSERT INTO layers(diff_id,blob_digest,size,media_type,unpacked,created,last_used) VALUES (?,?,?,?,0,?,?) ON CONFLICT(diff_id) DO NOTHING',
    );
    const insSource = this.store.db.prepare('INSERT OR REPLACE INTO layer_sources(diff_id,source) VALUES (?,?)');
    return img.layers.map((l, i) => {
      const diffId = img.diffIds[i]!;
      const existing = this.store.layer(diffId);
      if (this.store.layerReady(diffId) && existing) return existing;
      insLayer.run(diffId, l.digest, l.size, l.mediaType, this.store.now(), this.store.now());
      if (source && !this.store.hasBlob(l.digest)) insSource.run(diffId, JSON.stringify(source));
      return this.store.layer(diffId) ?? { diffId, digest: l.digest, size: l.size, mediaType: l.mediaType };
    });
  }

  /** Makes every layer of the image present and unpacked; returns the layer chain. */
  async ensureLayers(img: ResolvedImage, onStatus?: (msg: string) => void): Promise<LayerInfo[]> {
    return Promise.all(img.layers.map((l, i) => this.ensureLayer(img, l, img.diffIds[i]!, onStatus)));
  }

  private ensureLayer(img: ResolvedImage, l: ResolvedImage['layers'][number], diffId: string, onStatus?: (msg: string) => void): Promise<LayerInfo> {
    const info: LayerInfo = { diffId, digest: l.digest, size: l.size, mediaType: l.mediaType };
    if (this.store.layerReady(diffId)) return Promise.resolve(this.store.layer(diffId) ?? info);
    let p = this.pulls.get(diffId);
    if (!p) {
      p = this.pullLayer(img, info, onStatus);
      this.pulls.set(diffId, p);
    }
    return p;
  }

  private async pullLayer(img: ResolvedImage, info: LayerInfo, onStatus?: (msg: string) => void): Promise<LayerInfo> {
    if (!this.store.hasBlob(info.digest)) {
      const o = img.origin;
      if (o.kind === 'registry') {
        onStatus?.(`pulling ${info.digest.slice(0, 19)} ${(info.size / 1e6).toFixed(1)}MB`);
        const tmp = this.store.tmpPath('pull');
        // Not client.fetchBlob: on Node 20 its FileHandle.close() after an autoClose:false stream
        // never settles, and the process exits 0 mid-build with the event loop empty.
        try {
          await pipeline(await this.client.openBlob(o.ref, info.digest), createWriteStream(tmp));
        } catch (e) {
          await rm(tmp, { force: true });
          throw e;
        }
        await this.store.adoptBlob(tmp, info.digest, info.mediaType);
      } else if (o.kind === 'layout') {
        const tmp = this.store.tmpPath('layout');
        await copyFile(o.blobPath(info.digest), tmp);
        await this.store.adoptBlob(tmp, info.digest, info.mediaType);
        if (!(await this.store.verifyBlob(info.digest))) {
          await rm(this.store.blobPath(info.digest), { force: true });
          throw new StrataError('DIGEST_MISMATCH', `${img.name}: layer ${info.digest} does not match its digest`);
        }
      } else {
        throw new StrataError('BLOB_MISSING', `${img.name}: layer ${info.digest} is missing from the store`, { hint: 'run `strata doctor`, or pull the image again' });
      }
    }
    const dir = this.store.tmpPath('unpack');
    await mkdir(dir, { recursive: true });
    try {
      // Loaded on first use: a fully cached build never unpacks a layer.
      const { extractLayer } = await import('../snapshot/extract.js');
      const r = await extractLayer(createReadStream(this.store.blobPath(info.digest)), dir, { label: `${img.name} layer ${info.digest.slice(0, 19)}` });
      if (r.diffId !== info.diffId) {
        throw new StrataError('DIGEST_MISMATCH', `${img.name}: layer ${info.digest} unpacks to ${r.diffId}, but the image config says ${info.diffId}`);
      }
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    await this.store.adoptLayer(dir, info);
    return info;
  }
}
