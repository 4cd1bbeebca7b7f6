// `strata doctor`: checks the store against itself and repairs what it can. Safe to run while no
// build is active; after a kill -9 it clears what the dead process left (mounts, temp files,
// runtime state) and drops index rows that point at missing or corrupt content.
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Store } from './store.js';
import { hexOf, staleMounts } from './store.js';
import { IMAGE_SUFFIX, checkMountable } from '../snapshot/layer-mount.js';

export interface DoctorReport {
  problems: string[];
  repaired: string[];
  checkedBlobs: number;
  checkedLayers: number;
}

export async function runDoctor(store: Store, opts: { verifyBlobs: boolean; cleanupRuntime?: () => Promise<void> }): Promise<DoctorReport> {
  const r: DoctorReport = { problems: [], repaired: [], checkedBlobs: 0, checkedLayers: 0 };
  const tmp = join(store.root, 'tmp');
  const mounts = staleMounts(tmp);
  store.cleanTmp();
  if (mounts.length) r.repaired.push(`unmounted ${mounts.length} overlay mount(s) left by dead builds`);
  if (opts.cleanupRuntime) await opts.cleanupRuntime();

  const integrity = store.db.pragma('integrity_check', { simple: true });
  if (integrity !== 'ok') r.problems.push(`SQLite integrity check: ${String(integrity)}`);

  const blobs = store.db.prepare('SELECT digest FROM blobs').all() as { digest: string }[];
  for (const { digest } of blobs) {
    r.checkedBlobs++;
    const present = store.hasBlob(digest);
    const ok = present && (!opts.verifyBlobs || (await store.verifyBlob(digest)));
    if (!ok) {
      r.problems.push(`blob ${digest} is ${present ? 'corrupt' : 'missing'}`);
      if (present) rmSync(store.blobPath(digest), { force: true });
      store.db.prepare('DELETE FROM blobs WHERE digest=?').run(digest);
      r.repaired.push(`removed blob ${digest} from the index`);
    }
  }
  // Blob files without a row (a crash between rename and insert) are valid content: index them.
  const known = new Set(blobs.map((b) => b.digest));
  for (const name of readdirSync(join(store.root, 'blobs', 'sha256'))) {
    const digest = `sha256:${name}`;
    if (known.has(digest) || !/^[0-9a-f]{64}$/.test(name)) continue;
    if (await store.verifyBlob(digest)) {
      store.db.prepare('INSERT OR IGNORE INTO blobs(digest,size,media_type,created,last_used) VALUES (?,0,?,?,?)').run(digest, 'application/octet-stream', store.now(), store.now());
      r.repaired.push(`indexed unreferenced blob ${digest}`);
    } else {
      rmSync(store.blobPath(digest), { force: true });
      r.repaired.push(`removed corrupt unindexed blob file ${name}`);
    }
  }

  const layers = store.db.prepare('SELECT diff_id, blob_digest, unpacked FROM layers').all() as { diff_id: string; blob_digest: string; unpacked: number }[];
  const layerIds = new Set<string>();
  for (const l of layers) {
    r.checkedLayers++;
    layerIds.add(hexOf(l.diff_id));
    if (l.unpacked && !store.layerReady(l.diff_id)) {
      r.problems.push(`layer ${l.diff_id} is recorded as unpacked but its directory is missing`);
      store.db.prepare('UPDATE layers SET unpacked=0 WHERE diff_id=?').run(l.diff_id);
      r.repaired.push(`marked layer ${l.diff_id} for unpacking again`);
    }
    const fetchable = store.db.prepare('SELECT 1 FROM layer_sources WHERE diff_id=?').get(l.diff_id);
    if (!store.hasBlob(l.blob_digest) && !fetchable) {
      r.problems.push(`layer ${l.diff_id}: its blob ${l.blob_digest} is missing`);
      store.db.prepare('DELETE FROM layers WHERE diff_id=?').run(l.diff_id);
      store.db.prepare('DELETE FROM cache_records WHERE chain LIKE ?').run(`%${l.diff_id}%`);
      r.repaired.push(`dropped layer ${l.diff_id} and the cache records that use it`);
    }
  }
  const layerImages: string[] = [];
  for (const name of readdirSync(join(store.root, 'layers'))) {
    const isImage = name.endsWith(IMAGE_SUFFIX);
    const hex = isImage ? name.slice(0, -IMAGE_SUFFIX.length) : name;
    if (layerIds.has(hex)) {
      if (isImage) layerImages.push(`sha256:${hex}`);
      continue;
    }
    rmSync(join(store.root, 'layers', name), { recursive: true, force: true });
    r.repaired.push(`removed unindexed layer ${isImage ? 'image' : 'directory'} ${name}`);
  }
  // Layers kept as EROFS images need mounts; a store moved where there are none (a container
  // without the right) gets them unpacked from their blobs by the next build instead.
  if (layerImages.length) {
    const scratch = join(tmp, `doctor-${process.pid}-mount`);
    try {
      await checkMountable(store.layerImage(layerImages[0]!), scratch);
    } catch (e) {
      r.problems.push(`layer images cannot be mounted here: ${(e as Error).message}`);
      for (const d of layerImages) {
        store.removeLayerFiles(d);
        store.db.prepare('UPDATE layers SET unpacked=0 WHERE diff_id=?').run(d);
      }
      r.repaired.push(`removed ${layerImages.length} layer image(s); the next build unpacks those layers from their blobs`);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }

  const images = store.db.prepare('SELECT name, manifest_digest FROM images').all() as { name: string; manifest_digest: string }[];
  for (const i of images) {
    if (!store.hasBlob(i.manifest_digest)) r.problems.push(`image ${i.name}: manifest ${i.manifest_digest} is missing (rebuild or load it again)`);
  }
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  return r;
}
