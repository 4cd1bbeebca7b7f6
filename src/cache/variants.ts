// Layers are committed uncompressed (fast; the unpacked directory is what builds use) and
// compressed only when an output or a cache export needs a compressed blob, once per algorithm.
import { rm } from 'node:fs/promises';
import type { LayerInfo, Store } from './store.js';
import { compressLayer } from '../snapshot/compress.js';

export type Compression = 'gzip' | 'zstd';

export function isUncompressed(mediaType: string): boolean {
  return mediaType.endsWith('.tar') || mediaType === 'application/vnd.docker.image.rootfs.diff.tar';
}

const inflight = new Map<string, Promise<LayerInfo>>();

/** The layer as a `compression` blob: itself when already compressed (never recompressed). */
export function compressedVariant(store: Store, layer: LayerInfo, compression: Compression): Promise<LayerInfo> {
  if (!isUncompressed(layer.mediaType)) return Promise.resolve(layer);
  const row = store.db
    .prepare('SELECT digest, size, media_type FROM layer_variants WHERE diff_id=? AND compression=?')
    .get(layer.diffId, compression) as { digest: string; size: number; media_type: string } | undefined;
  if (row && store.hasBlob(row.digest)) return Promise.resolve({ diffId: layer.diffId, digest: row.digest, size: row.size, mediaType: row.media_type });
  const k = `${layer.diffId}/${compression}`;
  let p = inflight.get(k);
  if (!p) {
    p = (async () => {
      const tmp = store.tmpPath('compress');
      try {
        const r = await compressLayer(store.blobPath(layer.digest), { out: tmp, compression, diffId: layer.diffId });
        await store.adoptBlob(tmp, r.digest, r.mediaType);
        store.db
          .prepare('INSERT OR REPLACE INTO layer_variants(diff_id,compression,digest,size,media_type) VALUES (?,?,?,?,?)')
          .run(layer.diffId, compression, r.digest, r.size, r.mediaType);
        return { diffId: layer.diffId, digest: r.digest, size: r.size, mediaType: r.mediaType };
      } finally {
        await rm(tmp, { force: true });
        inflight.delete(k);
      }
    })();
    inflight.set(k, p);
  }
  return p;
}

export function compressChain(store: Store, chain: LayerInfo[], compression: Compression): Promise<LayerInfo[]> {
  return Promise.all(chain.map((l) => compressedVariant(store, l, compression)));
}
