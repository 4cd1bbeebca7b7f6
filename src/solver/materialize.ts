// Layers a step needs on disk. A cache hit only needs its layers to be obtainable; the content is
// fetched (from the store's blob, or from the imported cache that listed it) and unpacked only
// when a step runs on top of it or an output needs it.
//
// A layer whose blob is not in the store yet is unpacked as it streams in (from the cache folder,
// the registry or the OCI layout): one read feeds the hash of the compressed bytes, the copy kept
// in the store (image outputs and pushes need the blob) and the unpacker. Nothing made from those
// bytes is kept unless they hash to the layer's digest: on a mismatch the unpacked directory and
// the copy are removed and the error is the one a copy-then-verify fetch gives.
//
// Where the machine allows (snapshot/layer-image.ts), a layer made from a blob is not unpacked into
// files but written as one EROFS image, which the store mounts read-only for the processes that
// use it as an overlay lower (Store.layerLower): much faster for layers of many files, the same to
// every step on it.
import { createReadStream, existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { StrataError } from '../errors.js';
import type { LayerInfo, Store } from '../cache/store.js';
import { cacheBlobError, cacheBlobMismatch, fetchCacheBlob, openCacheBlob, type CacheSource } from '../cache/remote.js';
import type { RegistryClient } from '../registry/client.js';
import { parseReference } from '../registry/reference.js';
import { readThrough } from '../snapshot/streams.js';
import { debugLine } from '../debug.js';

/** A layer from an imported cache failed verification; the build retries without those records. */
export class BadCacheLayer extends StrataError {
  constructor(
    readonly diffId: string,
    cause: StrataError,
  ) {
    super('CACHE_CORRUPT', cause.message, { hint: cause.hint, cause });
  }
}

/** What ensureUnpacked made in the store's tmp area: an unpacked directory or a layer image. */
interface Made {
  kind: 'dir' | 'image';
  path: string;
  diffId: string;
}

/** Where a missing layer can be fetched; `image` is set for a base image's layers. */
export type LayerSource = CacheSource & { image?: string };

export class Materializer {
  private readonly unpacking = new Map<string, Promise<void>>();
  private readonly fetching = new Map<string, Promise<void>>();

  constructor(
    private readonly store: Store,
    private readonly client: RegistryClient,
  ) {}

  private source(diffId: string): LayerSource | undefined {
    const r = this.store.db.prepare('SELECT source FROM layer_sources WHERE diff_id=?').get(diffId) as { source: string } | undefined;
    return r ? (JSON.parse(r.source) as LayerSource) : undefined;
  }

  /** A base image's layer: fetched and verified like a pull, failing as the image's error. */
  private async fetchBaseBlob(src: LayerSource & { image: string }, l: LayerInfo): Promise<void> {
    if (src.kind === 'local') {
      try {
        await this.store.adoptBlobCopy(join(src.dir, 'blobs', ...l.digest.split(':')), l.digest, l.mediaType);
      } catch (e) {
        if (e instanceof StrataError && e.code === 'DIGEST_MISMATCH') {
          throw new StrataError('DIGEST_MISMATCH', `${src.image}: layer ${l.digest} does not match its digest`, { hint: 'the OCI layout is corrupt; export it again', cause: e });
        }
        throw e;
      }
      return;
    }
    const tmp = this.store.tmpPath('pull');
    try {
      await this.client.fetchBlob(parseReference(src.ref), l.digest, tmp);
      await this.store.adoptBlob(tmp, l.digest, l.mediaType);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Where a layer whose blob is not in the store would be fetched from. */
  blobSource(l: LayerInfo): LayerSource | undefined {
    return this.store.hasBlob(l.digest) ? undefined : this.source(l.diffId);
  }

  /** Whether the layer is here or can be fetched. */
  available(l: LayerInfo): boolean {
    return this.store.layerReady(l.diffId) || this.store.hasBlob(l.digest) || this.source(l.diffId) !== undefined;
  }

  ensureBlob(l: LayerInfo): Promise<void> {
    if (this.store.hasBlob(l.digest)) return Promise.resolve();
    let p = this.fetching.get(l.digest);
    if (!p) {
      p = (async () => {
        const src = this.source(l.diffId);
        if (!src) throw new StrataError('BLOB_MISSING', `layer ${l.diffId} has no content in the store and no cache to fetch it from`, { hint: 'run `strata doctor`, or build with --no-cache' });
        if (src.image !== undefined) return this.fetchBaseBlob({ ...src, image: src.image }, l);
        try {
          await fetchCacheBlob(this.store, src, l.digest, l.mediaType, this.client);
        } catch (e) {
          if (e instanceof StrataError && e.code === 'CACHE_CORRUPT') throw new BadCacheLayer(l.diffId, e);
          throw e;
        }
      })();
      this.fetching.set(l.digest, p);
    }
    return p;
  }

  ensureUnpacked(l: LayerInfo): Promise<void> {
    if (this.store.layerReady(l.diffId)) return Promise.resolve();
    let p = this.unpacking.get(l.diffId);
    if (!p) {
      p = (async () => {
        const src = this.source(l.diffId);
        const label = `${src?.image !== undefined ? `${src.image} layer` : 'cached layer'} ${l.digest.slice(0, 19)}`;
        // Loaded on first use: a fully cached build never unpacks a layer.
        const { layerImageSupport } = await import('../snapshot/layer-image.js');
        const images = layerImageSupport();
        const started = performance.now();
        const made =
          src && !this.store.hasBlob(l.digest) && !this.fetching.has(l.digest) && l.digest.startsWith('sha256:')
            ? await this.streamUnpack(l, src, label, images)
            : await this.fromBlob(l, label, images);
        try {
          if (made.diffId !== l.diffId && src?.image !== undefined) {
            throw new StrataError('DIGEST_MISMATCH', `${src.image}: layer ${l.digest} unpacks to ${made.diffId}, but the image config says ${l.diffId}`);
          }
          if (made.diffId !== l.diffId) {
            throw new BadCacheLayer(l.diffId, new StrataError('CACHE_CORRUPT', `cached layer ${l.digest} unpacks to ${made.diffId}, not ${l.diffId}`));
          }
        } catch (e) {
          await rm(made.path, { recursive: true, force: true });
          throw e;
        }
        if (made.kind === 'image') await this.adoptImage(made.path, l, label);
        else await this.store.adoptLayer(made.path, l);
        debugLine(`${label}: ${made.kind === 'image' ? 'image written and mounted' : 'unpacked'} in ${((performance.now() - started) / 1000).toFixed(2)}s`);
        this.store.db.prepare('DELETE FROM layer_sources WHERE diff_id=?').run(l.diffId);
      })();
      this.unpacking.set(l.diffId, p);
    }
    return p;
  }

  /**
   * Adopts a verified image as the layer and mounts it (the step about to run reads it). Where
   * mounting fails (no mount rights, no loop device: the probe cannot tell), images are off for
   * the rest of the process and the layer is unpacked from its blob.
   */
  private async adoptImage(image: string, l: LayerInfo, label: string): Promise<void> {
    try {
      await this.store.adoptLayerImage(image, l);
    } catch (e) {
      await rm(image, { force: true });
      throw e;
    }
    try {
      await this.store.layerLower(l.diffId);
      return;
    } catch (e) {
      if (!(e instanceof StrataError && e.code === 'LAYER_IMAGE_MOUNT')) throw e;
      const { disableLayerImages } = await import('../snapshot/layer-image.js');
      disableLayerImages(e.message);
      this.store.removeLayerFiles(l.diffId);
    }
    const made = await this.unpackBlob(l, label);
    await this.store.adoptLayer(made.path, l);
  }

  /** The layer from its blob in the store (fetched first when missing): an image where possible. */
  private async fromBlob(l: LayerInfo, label: string, images: boolean): Promise<Made> {
    await this.ensureBlob(l);
    if (images) {
      const { writeLayerImage, LayerImageUnsupported } = await import('../snapshot/layer-image.js');
      const image = this.store.tmpPath('image');
      try {
        const r = await writeLayerImage(createReadStream(this.store.blobPath(l.digest), { highWaterMark: 1 << 20 }), image, { label });
        return { kind: 'image', path: image, diffId: r.diffId };
      } catch (e) {
        if (!(e instanceof LayerImageUnsupported)) throw e;
        debugLine(`${label} is unpacked, not an image: ${e.message}`);
      }
    }
    return this.unpackBlob(l, label);
  }

  private async unpackBlob(l: LayerInfo, label: string): Promise<Made> {
    const dir = this.store.tmpPath('unpack');
    const { extractLayer } = await import('../snapshot/extract.js');
    const r = await extractLayer(createReadStream(this.store.blobPath(l.digest), { highWaterMark: 1 << 20 }), dir, { label });
    return { kind: 'dir', path: dir, diffId: r.diffId };
  }

  /** The layer's compressed bytes from where it was listed (unverified: streamUnpack hashes them). */
  private async openSource(l: LayerInfo, src: LayerSource): Promise<Readable> {
    if (src.image === undefined) return openCacheBlob(src, l.digest, this.client);
    if (src.kind === 'local') {
      const path = join(src.dir, 'blobs', ...l.digest.split(':'));
      if (!existsSync(path)) throw new StrataError('BLOB_MISSING', `${src.image}: layer ${l.digest} is missing from ${src.dir}`, { hint: 'the OCI layout is incomplete; export it again' });
      return createReadStream(path, { highWaterMark: 1 << 20 });
    }
    return this.client.openBlob(parseReference(src.ref), l.digest);
  }

  private verifyError(l: LayerInfo, src: LayerSource, actual: string | undefined, e: unknown): unknown {
    if (src.image === undefined) {
      const bad = actual !== undefined ? cacheBlobMismatch(src, l.digest, actual) : cacheBlobError(src, l.digest, e);
      return bad instanceof StrataError && bad.code === 'CACHE_CORRUPT' ? new BadCacheLayer(l.diffId, bad) : bad;
    }
    if (actual !== undefined) {
      return new StrataError('DIGEST_MISMATCH', `${src.image}: layer ${l.digest} does not match its digest (got ${actual})`, {
        hint: src.kind === 'local' ? 'the OCI layout is corrupt; export it again' : 'the registry sent other bytes; pull again',
      });
    }
    return e;
  }

  /**
   * Reads the blob once: every byte is hashed and written to a temp file in the store, and fed to
   * the unpacker (or the image writer). The source is read to its end even when unpacking fails
   * early, so a damaged blob is always reported as such (not as whatever its bytes made the
   * unpacker say). The blob is adopted when its digest matches, whatever the unpacker made of it;
   * nothing the unpacker made is kept otherwise. A layer the image cannot hold is unpacked from
   * the adopted blob.
   */
  private async streamUnpack(l: LayerInfo, src: LayerSource, label: string, images: boolean): Promise<Made> {
    const tmp = this.store.tmpPath('cachefetch');
    const target = this.store.tmpPath(images ? 'image' : 'unpack');
    // ensureBlob meanwhile (an output needing the blob) waits for this copy instead of fetching its own.
    let settleBlob!: (e?: unknown) => void;
    const blob = new Promise<void>((res, rej) => (settleBlob = (e) => (e === undefined ? res() : rej(e))));
    blob.catch(() => undefined);
    this.fetching.set(l.digest, blob);
    const { feed, digest } = readThrough(() => this.openSource(l, src), { copyTo: tmp });
    const imaging = images ? await import('../snapshot/layer-image.js') : undefined;
    const { extractLayer } = await import('../snapshot/extract.js');
    const unpack = imaging ? imaging.writeLayerImage(feed, target, { label }) : extractLayer(feed, target, { label });
    // Once the unpacker is done (or gave up) it reads no more: the rest is only hashed.
    unpack.then(
      () => feed.destroy(),
      () => feed.destroy(),
    );
    const [read, unpacked] = await Promise.allSettled([digest, unpack]);
    try {
      if (read.status === 'rejected') throw this.verifyError(l, src, undefined, read.reason);
      if (read.value !== l.digest) throw this.verifyError(l, src, read.value, undefined);
      await this.store.adoptBlob(tmp, l.digest, l.mediaType);
      settleBlob();
    } catch (e) {
      this.fetching.delete(l.digest);
      settleBlob(e);
      await Promise.all([rm(tmp, { force: true }), rm(target, { recursive: true, force: true })]);
      throw e;
    }
    if (unpacked.status === 'rejected') {
      if (imaging && unpacked.reason instanceof imaging.LayerImageUnsupported) {
        debugLine(`${label} is unpacked, not an image: ${unpacked.reason.message}`);
        return this.unpackBlob(l, label);
      }
      throw unpacked.reason;
    }
    return { kind: images ? 'image' : 'dir', path: target, diffId: unpacked.value.diffId };
  }

  async unpackChain(chain: LayerInfo[]): Promise<void> {
    await Promise.all(chain.map((l) => this.ensureUnpacked(l)));
  }

  async blobsOf(chain: LayerInfo[]): Promise<void> {
    await Promise.all(chain.map((l) => this.ensureBlob(l)));
  }
}

/** Forgets every cache record built on a layer that failed verification. */
export function dropBadLayer(store: Store, diffId: string): number {
  const n = store.db.prepare('DELETE FROM cache_records WHERE chain LIKE ?').run(`%${diffId}%`).changes;
  store.db.prepare('DELETE FROM layer_sources WHERE diff_id=?').run(diffId);
  if (!store.layerReady(diffId)) store.db.prepare('DELETE FROM layers WHERE diff_id=?').run(diffId);
  return n;
}
