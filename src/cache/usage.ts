// What the store holds, as records a user can reason about (BuildKit's `du` types):
// `regular` a step's cached result (its own layer), `image` a base image layer nothing else
// accounts for, `exec.cachemount` a cache mount, `source.local` a context's stat cache.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Store } from './store.js';
import { cacheMountDir, cacheMountInUse } from './cache-mounts.js';
import { oldestActiveBuild } from './history.js';

export type RecordType = 'regular' | 'image' | 'exec.cachemount' | 'source.local';

export interface UsageRecord {
  id: string;
  type: RecordType;
  size: number;
  created: number;
  last_used: number;
  in_use: boolean;
  shared: boolean;
  description: string;
  /** Layer this record owns (regular/image), for prune. */
  layer?: string;
  /** Build that wrote or last used it. */
  build?: string;
  /** A layer of an image kept by name in the store: not cache, `rmi` releases it. */
  pinned?: boolean;
  /** Layer chain of a regular record: prune frees a layer only when no record left holds it. */
  chain?: string[];
  /** The record's own layer must stay even if the record goes (a named image's, or in use). */
  layerHeld?: boolean;
}

export function dirSize(dir: string): number {
  if (!existsSync(dir)) return 0;
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.split('\t')[0]) || 0 : 0;
}

export function usage(store: Store, opts: { sizes?: boolean } = {}): UsageRecord[] {
  const active = oldestActiveBuild(store);
  // Whatever a live build used since it started may be about to be read or referenced.
  const inUse = (lastUsed: number) => active !== undefined && lastUsed >= active;
  const layers = new Map(
    (
      store.db.prepare('SELECT diff_id, blob_digest, size, disk_size, unpacked, created, last_used FROM layers').all() as {
        unpacked: number;
        diff_id: string;
        blob_digest: string;
        size: number;
        disk_size: number;
        created: number;
        last_used: number;
      }[]
    ).map((l) => [l.diff_id, l]),
  );
  const refCount = new Map<string, number>();
  const records = store.db.prepare('SELECT key, chain, created, last_used, build_id, description, layer FROM cache_records ORDER BY created').all() as {
    layer: string | null;
    key: string;
    chain: string;
    created: number;
    last_used: number;
    build_id: string | null;
    description: string | null;
  }[];
  const parsed = records.map((r) => ({ ...r, layers: JSON.parse(r.chain) as string[] }));
  for (const r of parsed) for (const d of r.layers) refCount.set(d, (refCount.get(d) ?? 0) + 1);
  const out: UsageRecord[] = [];
  const owned = new Set<string>();
  const pinned = namedImageBlobs(store);
  // Bytes on this disk: a layer listed by an imported cache or a base image but not fetched yet
  // (its blob elsewhere, not unpacked) takes none.
  const layerSize = (d: string) => {
    const l = layers.get(d);
    if (!l) return 0;
    return (store.hasBlob(l.blob_digest) ? l.size : 0) + (l.unpacked ? l.disk_size : 0);
  };
  // A record owns the layer its step added; two records that added the same bytes share it.
  for (const r of parsed) {
    const own = r.layer && layers.has(r.layer) && !owned.has(r.layer) ? r.layer : undefined;
    if (own) owned.add(own);
    out.push({
      id: r.key.slice(7, 19),
      type: 'regular',
      size: own ? layerSize(own) : 0,
      created: r.created,
      last_used: r.last_used,
      in_use: inUse(r.last_used),
      shared: own ? (refCount.get(own) ?? 0) > 1 : false,
      description: r.description ?? '',
      layer: own,
      build: r.build_id ?? undefined,
      chain: r.layers,
      layerHeld: own ? pinned.has(layers.get(own)!.blob_digest) || inUse(layers.get(own)!.last_used) : undefined,
    });
  }
  for (const [d, l] of layers) {
    if (owned.has(d)) continue;
    const isPinned = pinned.has(l.blob_digest);
    out.push({
      id: d.slice(7, 19),
      type: 'image',
      size: layerSize(d),
      created: l.created,
      last_used: l.last_used,
      in_use: inUse(l.last_used),
      shared: (refCount.get(d) ?? 0) > 1,
      description: isPinned ? `layer ${d} of a named image` : `layer ${d}`,
      layer: d,
      pinned: isPinned,
    });
  }
  const mounts = store.db.prepare('SELECT id, sharing, created, last_used, last_build, builds FROM cache_mounts ORDER BY id').all() as {
    id: string;
    sharing: string;
    created: number;
    last_used: number;
    last_build: string | null;
    builds: number;
  }[];
  for (const m of mounts) {
    out.push({
      id: m.id,
      type: 'exec.cachemount',
      size: opts.sizes === false ? 0 : dirSize(cacheMountDir(store, m.id) + '/data'),
      created: m.created,
      last_used: m.last_used,
      // A lease while a step runs; between steps, having been used by a live build since it began.
      in_use: cacheMountInUse(store, m.id) || inUse(m.last_used),
      shared: m.sharing === 'shared',
      description: `cache mount ${m.id} (sharing=${m.sharing}, used by ${m.builds} build${m.builds === 1 ? '' : 's'})`,
      build: m.last_build ?? undefined,
    });
  }
  return out;
}

/** Blobs (manifests, configs, layers) of images kept by name: `rmi` releases them, prune does not. */
export function namedImageBlobs(store: Store): Set<string> {
  const out = new Set<string>();
  for (const { d } of store.db.prepare('SELECT manifest_digest AS d FROM images').all() as { d: string }[]) {
    if (!store.hasBlob(d)) continue;
    out.add(d);
    try {
      const m = JSON.parse(readFileSync(store.blobPath(d), 'utf8')) as { config?: { digest: string }; layers?: { digest: string }[] };
      if (m.config) out.add(m.config.digest);
      for (const l of m.layers ?? []) out.add(l.digest);
    } catch {
      // Unreadable manifest: only the blob itself is known.
    }
  }
  return out;
}
