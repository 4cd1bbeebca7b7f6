// Exported cache: an OCI layout folder or an OCI artifact in a registry. One manifest whose config
// is strata's cache index (records with keys, creation times and layer chains; cache mounts) and
// whose layers are the layer blobs and cache mount tarballs. Import reads only the index; a blob is
// fetched (and verified) when a step actually needs its content.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { copyFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.js';
import type { RegistryClient } from '../registry/client.js';
import { parseReference, type ImageReference } from '../registry/reference.js';
import { BLOB_TRANSFERS, forEachLimit } from '../registry/parallel.js';
import { constants as fsConstants } from 'node:fs';
import type { LayerInfo, Store } from './store.js';
import { hexOf, pidAlive, sleepSync } from './store.js';
import { importBuilds, mergeBuilds, type ExportedBuild } from './shared-history.js';

export const CACHE_CONFIG_TYPE = 'application/vnd.strata.cache.config.v1+json';
export const CACHE_ARTIFACT_TYPE = 'application/vnd.strata.cache.v1';
export const MOUNT_TAR_GZIP = 'application/vnd.strata.cache.mount.v1.tar+gzip';
export const MOUNT_TAR_ZSTD = 'application/vnd.strata.cache.mount.v1.tar+zstd';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

export type CacheSource = { kind: 'local'; dir: string } | { kind: 'registry'; ref: string };

export interface ExportedRecord {
  key: string;
  chain: string[];
  created: number;
  description: string;
  /** Which export wrote it (keep=N keeps the newest N exports' records). */
  export: string;
}

export interface ExportedMount {
  id: string;
  digest: string;
  size: number;
  mediaType: string;
  sharing: string;
  created: number;
  lastUsed: number;
}

/**
 * A COPY --from file selection's checksum (the solver's selection_cache row): the key of a COPY
 * --from step holds it, so without it an importer would have to fetch and unpack the source
 * stage's layers just to compute the key of a step that is a hit.
 */
export interface ExportedSelection {
  key: string;
  digest: string;
  files: Record<string, string>;
  export: string;
}

export interface CacheIndex {
  version: 1;
  exports: { id: string; time: number }[];
  records: ExportedRecord[];
  layers: LayerInfo[];
  mounts: ExportedMount[];
  selections: ExportedSelection[];
  /** The exported builds' step inputs, so an importer's misses can name what changed. */
  builds?: ExportedBuild[];
}

export function sourceText(s: CacheSource): string {
  return s.kind === 'local' ? `type=local,src=${s.dir}` : `type=registry,ref=${s.ref}`;
}

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return 'sha256:' + h.digest('hex');
}

function badCache(source: CacheSource, what: string, hint = 'export the cache again; the build goes on without it'): StrataError {
  return new StrataError('CACHE_CORRUPT', `cache ${sourceText(source)}: ${what}`, { hint });
}

// ---------- reading ----------

export async function readCacheIndex(source: CacheSource, client: RegistryClient): Promise<CacheIndex | undefined> {
  let manifest: Buffer;
  let configBytes: Buffer;
  if (source.kind === 'local') {
    const read = readLocalIndex(source);
    if (!read) return undefined;
    ({ manifest, configBytes } = read);
  } else {
    const ref = parseReference(source.ref);
    let fetched;
    try {
      fetched = await client.getManifest(ref);
    } catch (e) {
      if (e instanceof StrataError && /NOT_FOUND/.test(e.code)) return undefined;
      throw e;
    }
    manifest = fetched.bytes;
    const m = JSON.parse(manifest.toString('utf8')) as { config: { digest: string; mediaType: string } };
    if (m.config?.mediaType !== CACHE_CONFIG_TYPE) throw badCache(source, `${source.ref} is not a strata cache`);
    configBytes = await client.fetchBlobBytes(ref, m.config.digest);
  }
  const index = JSON.parse(configBytes.toString('utf8')) as CacheIndex;
  if (index.version !== 1 || !Array.isArray(index.records) || !Array.isArray(index.layers)) throw badCache(source, 'unknown cache index version');
  index.mounts ??= [];
  index.exports ??= [];
  index.selections ??= [];
  return index;
}

function readLocalIndex(source: { kind: 'local'; dir: string }): { manifest: Buffer; configBytes: Buffer } | undefined {
  const indexPath = join(source.dir, 'index.json');
  for (let attempt = 1; ; attempt++) {
    if (!existsSync(indexPath)) return undefined;
    const text = readFileSync(indexPath, 'utf8');
    let index: { manifests?: { digest: string; annotations?: Record<string, string> }[] };
    try {
      index = JSON.parse(text) as typeof index;
    } catch {
      throw badCache(source, 'index.json is not valid JSON');
    }
    const desc = index.manifests?.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'strata-cache') ?? index.manifests?.[0];
    if (!desc) return undefined;
    try {
      const manifest = readLocalBlob(source, desc.digest);
      const m = JSON.parse(manifest.toString('utf8')) as { config: { digest: string; mediaType: string } };
      if (m.config?.mediaType !== CACHE_CONFIG_TYPE) throw badCache(source, 'this folder holds no strata cache');
      return { manifest, configBytes: readLocalBlob(source, m.config.digest) };
    } catch (e) {
      // An export swapped index.json and deleted the old manifest meanwhile: read the new one.
      const swapped = existsSync(indexPath) && readFileSync(indexPath, 'utf8') !== text;
      if (!swapped || attempt >= 5) throw e;
    }
  }
}

function readLocalBlob(source: { kind: 'local'; dir: string }, digest: string): Buffer {
  const path = join(source.dir, 'blobs', 'sha256', hexOf(digest));
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch {
    throw badCache(source, `blob ${digest} is missing`);
  }
  if ('sha256:' + sha256Hex(data) !== digest) throw badCache(source, `blob ${digest} does not match its digest (tampered or truncated)`);
  return data;
}

/**
 * An imported cache's blob as a stream of its bytes, NOT verified: the reader hashes them and
 * checks with `cacheBlobMismatch` before trusting anything made from them (a registry stream also
 * fails at its end on a mismatch). Errors (here or from the stream) go through `cacheBlobError`.
 */
export async function openCacheBlob(source: CacheSource, digest: string, client: RegistryClient): Promise<Readable> {
  if (source.kind === 'local') {
    const path = join(source.dir, 'blobs', 'sha256', hexOf(digest));
    if (!existsSync(path)) throw badCache(source, `blob ${digest} is missing`);
    return createReadStream(path, { highWaterMark: 1 << 20 });
  }
  try {
    return await client.openBlob(parseReference(source.ref), digest);
  } catch (e) {
    throw cacheBlobError(source, digest, e);
  }
}

/** The error for a cache blob whose bytes hash to `actual` instead of `digest`. */
export function cacheBlobMismatch(source: CacheSource, digest: string, actual: string): StrataError {
  return badCache(source, `blob ${digest} does not match its digest (got ${actual}): tampered or truncated`);
}

/** A failure while reading a cache blob, as CACHE_CORRUPT when it means the cache is bad. */
export function cacheBlobError(source: CacheSource, digest: string, e: unknown): unknown {
  if (e instanceof StrataError && e.code === 'CACHE_CORRUPT') return e;
  if (e instanceof StrataError && e.code === 'DIGEST_MISMATCH') return badCache(source, e.message);
  // Gone since the index was read (overwritten tag, registry garbage collection, folder pruned): as bad.
  if (e instanceof StrataError && e.code === 'BLOB_NOT_FOUND') return badCache(source, `blob ${digest} is missing from the registry`);
  if ((e as NodeJS.ErrnoException | null)?.code === 'ENOENT') return badCache(source, `blob ${digest} is missing`);
  return e;
}

/** Fetches one blob of an imported cache into the store, verified against its digest. */
export async function fetchCacheBlob(store: Store, source: CacheSource, digest: string, mediaType: string, client: RegistryClient): Promise<void> {
  if (store.hasBlob(digest)) return;
  const tmp = store.tmpPath('cachefetch');
  try {
    if (source.kind === 'local') {
      const path = join(source.dir, 'blobs', 'sha256', hexOf(digest));
      if (!existsSync(path)) throw badCache(source, `blob ${digest} is missing`);
      // One pass: hashed on the way into the store (a copy, then a second read to hash it, cost twice).
      const h = createHash('sha256');
      await pipeline(
        createReadStream(path, { highWaterMark: 1 << 20 }),
        new Transform({
          transform(chunk: Buffer, _enc, done) {
            h.update(chunk);
            done(null, chunk);
          },
        }),
        createWriteStream(tmp, { flags: 'wx' }),
      );
      const actual = 'sha256:' + h.digest('hex');
      if (actual !== digest) throw cacheBlobMismatch(source, digest, actual);
    } else {
      try {
        await client.fetchBlob(parseReference(source.ref), digest, tmp);
      } catch (e) {
        if (e instanceof StrataError && e.code === 'DIGEST_MISMATCH') throw badCache(source, e.message);
        // Gone since the index was read (overwritten tag, registry garbage collection): as bad.
        if (e instanceof StrataError && e.code === 'BLOB_NOT_FOUND') throw badCache(source, `blob ${digest} is missing from the registry`);
        throw e;
      }
    }
    await store.adoptBlob(tmp, digest, mediaType);
  } finally {
    rmSync(tmp, { force: true });
  }
}

// ---------- importing ----------

export interface ImportResult {
  records: number;
  layers: number;
  /**
   * The cache mounts this import seeds, as the build's summary names them: those unpacking now
   * in the background (startCacheMountSeed), and those waiting for a step to use them (mounts
   * 'on-use'), marked ` (on use)`.
   */
  mounts: string[];
  /** The cache mounts whose seed waits for a step of this process to use them (deferCacheMountSeed). */
  deferred: string[];
  /**
   * Settles when the seeds have: the mounts that were seeded (a tarball can still fail to
   * unpack). Asking for it first starts the seeds still waiting for a step: `strata cache import`
   * asks, and so seeds every mount.
   */
  readonly seeded: Promise<string[]>;
  /** Cache mounts that could not be seeded (bad tarball); the records are imported all the same. */
  warnings: string[];
}

/**
 * Which cache mounts an import seeds: every one ('all') or the listed ones right away, in the
 * background; none; or ('on-use', a build's --cache-from without mounts=) each when a step of
 * this process first uses it, so a build does not spend its cores on mounts none of its steps
 * runs with. Only mounts missing locally or older there are seeded.
 */
export type MountImport = 'all' | string[] | 'none' | 'on-use';

/**
 * Adds the cache's records to the store (keeping local ones), remembers where each layer can be
 * fetched from, and seeds requested cache mounts that are missing or older locally.
 */
export async function importCache(store: Store, source: CacheSource, client: RegistryClient, opts: { mounts: MountImport }): Promise<ImportResult | undefined> {
  const index = await readCacheIndex(source, client);
  if (!index) return undefined;
  const src = JSON.stringify(source);
  const insLayer = store.db.prepare(
    'INSERT INTO layers(diff_id,blob_digest,size,media_type,unpacked,created,last_used) VALUES (?,?,?,?,0,?,?) ON CONFLICT(diff_id) DO NOTHING',
  );
  const insSource = store.db.prepare('INSERT OR REPLACE INTO layer_sources(diff_id,source) VALUES (?,?)');
  const insRecord = store.db.prepare(
    'INSERT INTO cache_records(key,chain,created,last_used,build_id,description,layer,origin) VALUES (?,?,?,?,NULL,?,?,?) ON CONFLICT(key) DO NOTHING',
  );
  const insSelection = store.db.prepare('INSERT OR IGNORE INTO selection_cache(key,digest,files) VALUES (?,?,?)');
  let records = 0;
  const known = new Set(index.layers.map((l) => l.diffId));
  store.db.transaction(() => {
    for (const sel of index.selections) insSelection.run(sel.key, sel.digest, JSON.stringify(sel.files));
    for (const l of index.layers) {
      insLayer.run(l.diffId, l.digest, l.size, l.mediaType, store.now(), store.now());
      if (!store.layerReady(l.diffId)) insSource.run(l.diffId, src);
    }
    for (const r of index.records) {
      if (!r.chain.every((d) => known.has(d) || store.layer(d))) continue;
      const top = r.chain[r.chain.length - 1] ?? null;
      records += insRecord.run(r.key, JSON.stringify(r.chain), r.created, store.now(), r.description, top, src).changes;
    }
  }).immediate();
  if (index.builds?.length) importBuilds(store, index.builds, sourceText(source));
  const seeded: string[] = [];
  const deferred: string[] = [];
  const outcomes: Promise<string | undefined>[] = [];
  const warnings: string[] = [];
  const mounts = opts.mounts;
  const seeds = mounts === 'none' ? undefined : await import('./cache-mounts.js');
  if (seeds) {
    const { startCacheMountSeed, cacheMountSeeded, deferCacheMountSeed } = seeds;
    const wanted = index.mounts.filter((m) => {
      if (Array.isArray(mounts) && !mounts.includes(m.id)) return false;
      const local = store.db.prepare('SELECT last_used FROM cache_mounts WHERE id=?').get(m.id) as { last_used: number } | undefined;
      return !(local && local.last_used >= m.lastUsed);
    });
    const late = (message: string) => process.stderr.write(`WARNING: --cache-from ${sourceText(source)}: ${message}\n`);
    const start = (m: ExportedMount & { urgent?: boolean }, open: () => Promise<NodeJS.ReadableStream>): boolean => {
      if (!startCacheMountSeed(store, m.id, open, m, late)) return false;
      // Asked at once, while the seed is still listed as running.
      outcomes.push(cacheMountSeeded(store, m.id).then((ok) => (ok === false ? undefined : m.id)));
      return true;
    };
    if (mounts === 'on-use') {
      // Nothing is read now: the seed hashes the tarball as it unpacks it and refuses a mismatch
      // (a warning; the step then runs with the mount as it was).
      for (const m of wanted) {
        deferCacheMountSeed(store, m.id, {
          lastUsed: m.lastUsed,
          from: `--cache-from ${sourceText(source)}`,
          hint: `strata cache import ${sourceText(source)}`,
          start: () => start({ ...m, urgent: true }, () => openCacheBlob(source, m.digest, client)),
        });
        deferred.push(m.id);
      }
    } else {
      // Tarballs are verified here (all at once), so the import reports what it seeds; the seeds
      // themselves run in the background (see startCacheMountSeed) and check the bytes again.
      const verified = await Promise.all(
        wanted.map(async (m) => {
          try {
            if (source.kind === 'local') {
              const path = join(source.dir, 'blobs', 'sha256', hexOf(m.digest));
              if (!existsSync(path)) throw badCache(source, `blob ${m.digest} is missing`);
              const actual = await fileDigest(path);
              if (actual !== m.digest) throw cacheBlobMismatch(source, m.digest, actual);
              return { m, path };
            }
            await fetchCacheBlob(store, source, m.digest, m.mediaType, client);
            return { m, path: store.blobPath(m.digest) };
          } catch (e) {
            if (!(e instanceof StrataError) || e.code !== 'CACHE_CORRUPT') throw e;
            warnings.push(`cache mount ${m.id} not seeded: ${e.message}`);
            return undefined;
          }
        }),
      );
      for (const v of verified) if (v && start(v.m, async () => createReadStream(v.path, { highWaterMark: 1 << 20 }))) seeded.push(v.m.id);
    }
  }
  let done: Promise<string[]> | undefined;
  return {
    records,
    layers: index.layers.length,
    mounts: [...seeded, ...deferred.map((id) => `${id} (on use)`)],
    deferred,
    get seeded() {
      if (!done) {
        if (seeds) seeds.startDeferredSeeds(store, deferred);
        done = Promise.all(outcomes).then((ids) => ids.filter((id): id is string => id !== undefined));
      }
      return done;
    },
    warnings,
  };
}

// ---------- exporting ----------

export interface ExportRequest {
  records: { key: string; chain: LayerInfo[]; created: number; description: string }[];
  mounts: string[];
  selections: { key: string; digest: string; files: Record<string, string> }[];
  builds?: ExportedBuild[];
  compression: 'gzip' | 'zstd';
  /** Keep the records of this many exports (this one included). */
  keep: number;
}

interface Lock {
  release(): void;
}

function lockDir(dir: string): Lock {
  const lock = join(dir, '.strata-lock');
  for (let i = 0; ; i++) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      return { release: () => rmSync(lock, { recursive: true, force: true }) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let owner = NaN;
      try {
        owner = Number(readFileSync(join(lock, 'pid'), 'utf8'));
      } catch {
        // Being written.
      }
      if (Number.isFinite(owner) && !pidAlive(owner)) rmSync(lock, { recursive: true, force: true });
      else if (i > 600) throw new StrataError('CACHE_LOCKED', `${dir} is locked by process ${owner}`, { hint: 'wait for the other export to finish' });
      else sleepSync(100);
    }
  }
}

/**
 * An exported mount tarball that still stands for the local mount: no build used the mount since
 * (same last use) and the destination still has the blob. Repacking would give other bytes
 * (tar records access times), so the export would rewrite (or re-upload) an unchanged mount.
 */
async function unchangedMounts(old: CacheIndex | undefined, mounts: ExportedMount[], present: (digest: string) => Promise<boolean>): Promise<Map<string, ExportedMount>> {
  const out = new Map<string, ExportedMount>();
  for (const m of mounts) {
    const prev = old?.mounts.find((x) => x.id === m.id);
    if (prev && prev.lastUsed === m.lastUsed && prev.mediaType === m.mediaType && prev.digest !== m.digest && (await present(prev.digest))) out.set(m.id, prev);
  }
  return out;
}

function dropRecordsWithout(index: CacheIndex, missing: Set<string>): void {
  if (missing.size === 0) return;
  index.records = index.records.filter((r) => !r.chain.some((d) => missing.has(d)));
  const used = new Set(index.records.flatMap((r) => r.chain));
  index.layers = index.layers.filter((l) => used.has(l.diffId));
}

function mergeIndex(old: CacheIndex | undefined, req: ExportRequest, mounts: ExportedMount[], exportId: string, now: number): CacheIndex {
  const exports = [{ id: exportId, time: now }, ...(old?.exports ?? [])].slice(0, Math.max(1, req.keep));
  const keepIds = new Set(exports.map((e) => e.id));
  const records = new Map<string, ExportedRecord>();
  for (const r of old?.records ?? []) if (keepIds.has(r.export)) records.set(r.key, r);
  for (const r of req.records) records.set(r.key, { key: r.key, chain: r.chain.map((l) => l.diffId), created: r.created, description: r.description, export: exportId });
  const layers = new Map<string, LayerInfo>();
  for (const l of old?.layers ?? []) layers.set(l.diffId, l);
  for (const r of req.records) for (const l of r.chain) layers.set(l.diffId, l);
  const used = new Set([...records.values()].flatMap((r) => r.chain));
  const mountMap = new Map<string, ExportedMount>();
  for (const m of old?.mounts ?? []) mountMap.set(m.id, m);
  for (const m of mounts) mountMap.set(m.id, m);
  const selections = new Map<string, ExportedSelection>();
  for (const sel of old?.selections ?? []) if (keepIds.has(sel.export)) selections.set(sel.key, sel);
  for (const sel of req.selections) selections.set(sel.key, { ...sel, export: exportId });
  return {
    version: 1,
    exports,
    records: [...records.values()],
    layers: [...layers.values()].filter((l) => used.has(l.diffId)),
    mounts: [...mountMap.values()],
    selections: [...selections.values()],
    builds: mergeBuilds(old?.builds, req.builds ?? [], exportId, keepIds),
  };
}

function manifestFor(configBytes: Buffer, index: CacheIndex): Buffer {
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: CACHE_ARTIFACT_TYPE,
    config: { mediaType: CACHE_CONFIG_TYPE, digest: 'sha256:' + sha256Hex(configBytes), size: configBytes.length },
    layers: [
      ...index.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      ...index.mounts.map((m) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, annotations: { 'dev.strata.cache.mount': m.id } })),
    ],
  };
  return Buffer.from(JSON.stringify(manifest));
}

/** Writes the export to an OCI layout folder: new blobs only, the index swapped in last. */
export async function exportToLocal(store: Store, dir: string, req: ExportRequest, mounts: ExportedMount[], exportId: string): Promise<{ blobsWritten: number; index: CacheIndex }> {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const lock = lockDir(dir);
  try {
    // Left by an exporter that died holding the lock (blob temp files go with the unreferenced blobs).
    for (const name of readdirSync(dir)) if (name.startsWith('index.json.tmp-')) rmSync(join(dir, name), { force: true });
    let old: CacheIndex | undefined;
    try {
      old = await readCacheIndex({ kind: 'local', dir }, undefined as unknown as RegistryClient);
    } catch {
      old = undefined;
    }
    const kept = await unchangedMounts(old, mounts, async (d) => existsSync(join(dir, 'blobs', 'sha256', hexOf(d))));
    mounts = mounts.map((m) => kept.get(m.id) ?? m);
    const index = mergeIndex(old, req, mounts, exportId, store.now());
    // A layer neither here nor in the folder (a kept record whose blob is gone): its records go.
    const inFolder = (d: string) => existsSync(join(dir, 'blobs', 'sha256', hexOf(d)));
    dropRecordsWithout(index, new Set(index.layers.filter((l) => !store.hasBlob(l.digest) && !inFolder(l.digest)).map((l) => l.diffId)));
    index.mounts = index.mounts.filter((m) => store.hasBlob(m.digest) || inFolder(m.digest));
    let blobsWritten = 0;
    const put = async (digest: string, from: string) => {
      const dest = join(dir, 'blobs', 'sha256', hexOf(digest));
      if (existsSync(dest)) return;
      const tmp = `${dest}.tmp-${process.pid}`;
      await copyFile(from, tmp, fsConstants.COPYFILE_FICLONE);
      await rename(tmp, dest);
      blobsWritten++;
    };
    // A few copies at once (the kernel copies; a reflink where the filesystem can): one leaves the disk idle between files.
    const copies = new Map<string, string>();
    for (const l of index.layers) if (store.hasBlob(l.digest)) copies.set(l.digest, store.blobPath(l.digest));
    for (const m of mounts) if (!kept.has(m.id)) copies.set(m.digest, store.blobPath(m.digest));
    await forEachLimit([...copies], 3, ([digest, from]) => put(digest, from));
    const configBytes = Buffer.from(JSON.stringify(index));
    const manifest = manifestFor(configBytes, index);
    const writeBlob = (data: Buffer) => {
      const hex = sha256Hex(data);
      const dest = join(dir, 'blobs', 'sha256', hex);
      if (!existsSync(dest)) {
        writeFileSync(`${dest}.tmp-${process.pid}`, data);
        renameSync(`${dest}.tmp-${process.pid}`, dest);
        blobsWritten++;
      }
      return 'sha256:' + hex;
    };
    writeBlob(configBytes);
    const manifestDigest = writeBlob(manifest);
    writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    const ociIndex = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: manifestDigest, size: manifest.length, artifactType: CACHE_ARTIFACT_TYPE, annotations: { 'org.opencontainers.image.ref.name': 'strata-cache' } }],
    };
    writeFileSync(join(dir, `index.json.tmp-${process.pid}`), JSON.stringify(ociIndex));
    renameSync(join(dir, `index.json.tmp-${process.pid}`), join(dir, 'index.json'));
    // Blobs no record, mount or the new manifest references any more.
    const live = new Set([...index.layers.map((l) => hexOf(l.digest)), ...index.mounts.map((m) => hexOf(m.digest)), hexOf(manifestDigest), sha256Hex(configBytes)]);
    for (const name of readdirSync(join(dir, 'blobs', 'sha256'))) {
      if (!live.has(name)) rmSync(join(dir, 'blobs', 'sha256', name), { force: true });
    }
    return { blobsWritten, index };
  } finally {
    lock.release();
  }
}


/** Pushes the export to a registry as one OCI artifact under `ref` (last writer wins, never a mix). */
/** A blob streamed from another repository (the registry verifies the digest of the upload). */
function streamFrom(client: RegistryClient, from: ImageReference, digest: string): () => Readable {
  return () => {
    const out = new PassThrough();
    client.openBlob(from, digest).then(
      (s) => {
        s.on('error', (e) => out.destroy(e));
        s.pipe(out);
      },
      (e: unknown) => out.destroy(e instanceof Error ? e : new Error(String(e))),
    );
    return out;
  };
}

/**
 * `layerSource` tells where a layer missing from the store was imported from: a layer from another
 * repository of the same registry is mounted across repositories (streamed if the mount is refused)
 * rather than fetched here first.
 */
export async function exportToRegistry(
  store: Store,
  client: RegistryClient,
  refText: string,
  req: ExportRequest,
  mounts: ExportedMount[],
  exportId: string,
  layerSource: (l: LayerInfo) => CacheSource | undefined = () => undefined,
): Promise<{ index: CacheIndex }> {
  const ref: ImageReference = parseReference(refText);
  let old: CacheIndex | undefined;
  try {
    old = await readCacheIndex({ kind: 'registry', ref: refText }, client);
  } catch {
    old = undefined;
  }
  const kept = await unchangedMounts(old, mounts, (d) => client.blobExists(ref, d));
  mounts = mounts.map((m) => kept.get(m.id) ?? m);
  const index = mergeIndex(old, req, mounts, exportId, store.now());
  // Records kept from an older export whose blobs we do not hold are dropped unless the registry has them.
  const missing = new Set<string>();
  // Blobs go up a few at once: one upload keeps neither the registry nor this process busy.
  await forEachLimit(index.layers, BLOB_TRANSFERS, async (l) => {
    if (store.hasBlob(l.digest)) {
      await client.pushBlob(ref, l.digest, l.size, store.blobPath(l.digest));
      return;
    }
    if (await client.blobExists(ref, l.digest)) return;
    const src = layerSource(l);
    const from = src?.kind === 'registry' ? parseReference(src.ref) : undefined;
    if (from && from.registry === ref.registry) await client.pushBlob(ref, l.digest, l.size, streamFrom(client, from, l.digest), { mountFrom: from });
    else missing.add(l.diffId);
  });
  dropRecordsWithout(index, missing);
  const present = new Set<string>();
  await forEachLimit(index.mounts, BLOB_TRANSFERS, async (m) => {
    if (store.hasBlob(m.digest)) await client.pushBlob(ref, m.digest, m.size, store.blobPath(m.digest));
    else if (!(await client.blobExists(ref, m.digest))) return;
    present.add(m.digest);
  });
  index.mounts = index.mounts.filter((m) => present.has(m.digest));
  const configBytes = Buffer.from(JSON.stringify(index));
  const configDigest = 'sha256:' + sha256Hex(configBytes);
  await client.pushBlob(ref, configDigest, configBytes.length, () => Readable.from([configBytes]));
  const manifest = manifestFor(configBytes, index);
  await client.putManifest(ref, ref.tag ?? 'latest', manifest, OCI_MANIFEST);
  return { index };
}
