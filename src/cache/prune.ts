// Removing cache: records chosen by filters (or least recently used first down to a size), never
// what a live build holds; then every layer and blob nothing references any more.
import { readFileSync, rmSync } from 'node:fs';
import type { Store } from './store.js';
import { cacheMountDir, cacheMountInUse } from './cache-mounts.js';
import { usage, type RecordType, type UsageRecord } from './usage.js';
import { oldestActiveBuild } from './history.js';

export interface PruneOptions {
  /** Also remove cache mounts (without it they go only when a type/id filter names them). */
  all?: boolean;
  /** Only records not used for this long (ms). */
  untilMs?: number;
  ids?: string[];
  types?: RecordType[];
  /** Stop once what is left is at most this many bytes (least recently used go first). */
  keepStorage?: number;
  /** Records of this build are never removed (GC keeps the last build whole). */
  protectBuild?: string;
  /** Nor anything used since this time (the last build's hits). */
  protectSince?: number;
  dryRun?: boolean;
  /** Cache mounts found leased at the last moment (internal). */
  skipMounts?: string[];
}

export interface PruneResult {
  removed: UsageRecord[];
  freed: number;
}

function matches(r: UsageRecord, o: PruneOptions, now: number): boolean {
  if (r.in_use || r.pinned) return false;
  if (r.type === 'exec.cachemount' && o.skipMounts?.includes(r.id)) return false;
  if (o.protectBuild && r.build === o.protectBuild) return false;
  if (o.protectSince !== undefined && r.last_used >= o.protectSince) return false;
  if (o.types?.length && !o.types.includes(r.type)) return false;
  if (o.ids?.length && !o.ids.some((id) => r.id === id || (r.type !== 'exec.cachemount' && r.id.startsWith(id)))) return false;
  if (o.untilMs !== undefined && now - r.last_used < o.untilMs) return false;
  // Cache mounts are the most expensive thing to lose: only when asked for by --all or by name.
  if (r.type === 'exec.cachemount' && !o.all && !o.types?.includes('exec.cachemount') && !o.ids?.length) return false;
  return true;
}

/**
 * Which records to remove, and what that frees. Removing a regular record always drops its cache
 * entry, but its layer is freed only once no record left has it in its chain (a parent's layer
 * stays while a child is kept); a layer-only (`image`) record goes only when nothing holds it.
 * With `keepStorage`, candidates go least recently used first until the store fits.
 */
function choose(records: UsageRecord[], candidates: UsageRecord[], keepStorage: number | undefined): { removed: UsageRecord[]; freedLayers: Set<string>; freed: number } {
  const refs = new Map<string, number>();
  for (const r of records) for (const d of new Set(r.chain ?? [])) refs.set(d, (refs.get(d) ?? 0) + 1);
  const held = (d: string) => (refs.get(d) ?? 0) > 0;
  const chosenOwner = new Map<string, UsageRecord>();
  const freedBy = new Map<UsageRecord, number>();
  const freedLayers = new Set<string>();
  let total = records.reduce((n, r) => n + r.size, 0);
  const free = (r: UsageRecord, bytes: number) => {
    freedBy.set(r, (freedBy.get(r) ?? 0) + bytes);
    total -= bytes;
  };
  const removed: UsageRecord[] = [];
  const take = (r: UsageRecord) => {
    removed.push(r);
    freedBy.set(r, 0);
    if (r.type === 'exec.cachemount') free(r, r.size);
    if (r.type === 'regular') {
      for (const d of new Set(r.chain ?? [])) {
        refs.set(d, (refs.get(d) ?? 1) - 1);
        const owner = chosenOwner.get(d);
        // The parent's layer was waiting for this, its last holder.
        if (owner && !held(d) && !freedLayers.has(d)) {
          freedLayers.add(d);
          free(owner, owner.size);
        }
      }
    }
    if (r.layer && !r.layerHeld) {
      chosenOwner.set(r.layer, r);
      if (!held(r.layer) && !freedLayers.has(r.layer)) {
        freedLayers.add(r.layer);
        free(r, r.size);
      }
    }
  };
  let pending = [...candidates];
  if (keepStorage !== undefined) {
    // LRU, cache mounts last. A record whose layer a kept record (or a named image) holds would
    // free nothing: leave it. A parent chosen before its child frees its layer with the child.
    pending.sort((a, b) => Number(a.type === 'exec.cachemount') - Number(b.type === 'exec.cachemount') || a.last_used - b.last_used);
    const candidateSet = new Set(candidates);
    const keptChains = new Map<string, number>();
    for (const r of records) if (!candidateSet.has(r)) for (const d of new Set(r.chain ?? [])) keptChains.set(d, (keptChains.get(d) ?? 0) + 1);
    const neverFrees = (r: UsageRecord) => !!r.layer && ((r.type === 'regular' && r.layerHeld) || ((r.type === 'regular' || r.type === 'image') && keptChains.has(r.layer)));
    pending = pending.filter((r) => !neverFrees(r));
  }
  for (let progress = true; progress && pending.length; ) {
    progress = false;
    const next: UsageRecord[] = [];
    for (const r of pending) {
      if (keepStorage !== undefined && total <= keepStorage) {
        next.length = 0;
        break;
      }
      // A layer-only record goes once the records holding its layer are gone (maybe later in this pass).
      if (r.type === 'image' && r.layer && held(r.layer)) {
        next.push(r);
        continue;
      }
      take(r);
      progress = true;
    }
    pending = next;
  }
  return { removed: removed.map((r) => ({ ...r, size: freedBy.get(r) ?? 0 })), freedLayers, freed: [...freedBy.values()].reduce((n, b) => n + b, 0) };
}

export function prune(store: Store, o: PruneOptions): PruneResult {
  const records = usage(store);
  const now = store.now();
  const { removed, freedLayers, freed } = choose(records, records.filter((r) => matches(r, o, now)), o.keepStorage);
  if (o.dryRun) return { removed, freed };
  // A build may have leased a mount since usage() looked: leave it.
  const busy = new Set(removed.filter((r) => r.type === 'exec.cachemount' && cacheMountInUse(store, r.id)));
  if (busy.size) return prune(store, { ...o, skipMounts: [...(o.skipMounts ?? []), ...[...busy].map((r) => r.id)] });
  const delRecord = store.db.prepare('DELETE FROM cache_records WHERE key LIKE ?');
  const delMount = store.db.prepare('DELETE FROM cache_mounts WHERE id=?');
  store.db.transaction(() => {
    for (const r of removed) {
      if (r.type === 'regular') delRecord.run(`sha256:${r.id}%`);
      if (r.type === 'exec.cachemount') delMount.run(r.id);
    }
  }).immediate();
  for (const r of removed) if (r.type === 'exec.cachemount') rmSync(cacheMountDir(store, r.id), { recursive: true, force: true });
  collectGarbage(store, freedLayers);
  return { removed, freed };
}

/**
 * Drops layers no cache record or image needs (only those in `candidates` when given), then
 * blobs nothing references.
 */
export function collectGarbage(store: Store, candidates?: Set<string>): void {
  // Whatever a running build touched since it started may be about to be referenced: keep it.
  const active = oldestActiveBuild(store) ?? Infinity;
  const live = new Set<string>();
  for (const r of store.db.prepare('SELECT chain FROM cache_records').all() as { chain: string }[]) {
    for (const d of JSON.parse(r.chain) as string[]) live.add(d);
  }
  const liveBlobs = new Set<string>();
  const manifests = [
    ...(store.db.prepare('SELECT manifest_digest AS d FROM images').all() as { d: string }[]),
    ...(store.db.prepare('SELECT digest AS d FROM resolutions').all() as { d: string }[]),
  ];
  for (const { d } of manifests) {
    if (!store.hasBlob(d)) continue;
    liveBlobs.add(d);
    try {
      const m = JSON.parse(readFileSync(store.blobPath(d), 'utf8')) as { config?: { digest: string }; layers?: { digest: string }[] };
      if (m.config) liveBlobs.add(m.config.digest);
      for (const l of m.layers ?? []) liveBlobs.add(l.digest);
    } catch {
      // Not a manifest we can read: keep just the blob.
    }
  }
  const layers = store.db.prepare('SELECT diff_id, blob_digest, last_used FROM layers').all() as { diff_id: string; blob_digest: string; last_used: number }[];
  const delLayer = store.db.prepare('DELETE FROM layers WHERE diff_id=?');
  const delSource = store.db.prepare('DELETE FROM layer_sources WHERE diff_id=?');
  for (const l of layers) {
    const imageLayer = liveBlobs.has(l.blob_digest);
    if (live.has(l.diff_id) || l.last_used >= active || (imageLayer && !candidates?.has(l.diff_id))) {
      liveBlobs.add(l.blob_digest);
      continue;
    }
    if (imageLayer) {
      // A named image still needs the blob; only the unpacked copy goes.
      store.db.prepare('UPDATE layers SET unpacked=0 WHERE diff_id=?').run(l.diff_id);
      store.removeLayerFiles(l.diff_id);
      continue;
    }
    // Layers of records the caller did not choose stay, even when nothing references them: they
    // are records of their own (`image` in du) and go only when a prune chooses them.
    if (candidates && !candidates.has(l.diff_id)) continue;
    delLayer.run(l.diff_id);
    delSource.run(l.diff_id);
    // A layer from a blob may be an image (snapshot/layer-image.ts): this process's mount of it goes too.
    store.removeLayerFiles(l.diff_id);
  }
  const blobs = store.db.prepare('SELECT digest, last_used FROM blobs').all() as { digest: string; last_used: number }[];
  const delBlob = store.db.prepare('DELETE FROM blobs WHERE digest=?');
  const layerBlobs = new Set((store.db.prepare('SELECT blob_digest AS d FROM layers').all() as { d: string }[]).map((r) => r.d));
  for (const { digest, last_used } of blobs) {
    if (liveBlobs.has(digest) || layerBlobs.has(digest) || last_used >= active) continue;
    delBlob.run(digest);
    rmSync(store.blobPath(digest), { force: true });
  }
}

/** The automatic GC after a build: least recently used first, cache mounts last, the last build never. */
export function autoGc(store: Store, o: { limit: number; buildId: string; buildStarted: number }): PruneResult | undefined {
  const total = usage(store).reduce((n, r) => n + r.size, 0);
  if (total <= o.limit) return undefined;
  return prune(store, { keepStorage: o.limit, protectBuild: o.buildId, protectSince: o.buildStarted, all: true });
}
