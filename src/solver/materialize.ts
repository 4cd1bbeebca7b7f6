// Layers a step needs on disk. A cache hit only needs its layers to be obtainable; the content is
// fetched (from the store's blob, or from the imported cache that listed it) and unpacked only
// when a step runs on top of it or an output needs it.
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.js';
import type { LayerInfo, Store } from '../cache/store.js';
import { fetchCacheBlob, type CacheSource } from '../cache/remote.js';
import type { RegistryClient } from '../registry/client.js';
import { parseReference } from '../registry/reference.js';

/** A layer from an imported cache failed verification; the build retries without those records. */
export class BadCacheLayer extends StrataError {
  constructor(
    readonly diffId: string,
    cause: StrataError,
  ) {
    super('CACHE_CORRUPT', cause.message, { hint: cause.hint, cause });
  }
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
        const image = this.source(l.diffId)?.image;
        await this.ensureBlob(l);
        const dir = this.store.tmpPath('unpack');
        await mkdir(dir, { recursive: true });
        try {
          // Loaded on first use: a fully cached build never unpacks a layer.
          const { extractLayer } = await import('../snapshot/extract.js');
          const r = await extractLayer(createReadStream(this.store.blobPath(l.digest)), dir, { label: `${image ? `${image} layer` : 'cached layer'} ${l.digest.slice(0, 19)}` });
          if (r.diffId !== l.diffId && image !== undefined) {
            throw new StrataError('DIGEST_MISMATCH', `${image}: layer ${l.digest} unpacks to ${r.diffId}, but the image config says ${l.diffId}`);
          }
          if (r.diffId !== l.diffId) {
            throw new BadCacheLayer(l.diffId, new StrataError('CACHE_CORRUPT', `cached layer ${l.digest} unpacks to ${r.diffId}, not ${l.diffId}`));
          }
        } catch (e) {
          await rm(dir, { recursive: true, force: true });
          throw e;
        }
        await this.store.adoptLayer(dir, l);
        this.store.db.prepare('DELETE FROM layer_sources WHERE diff_id=?').run(l.diffId);
      })();
      this.unpacking.set(l.diffId, p);
    }
    return p;
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
