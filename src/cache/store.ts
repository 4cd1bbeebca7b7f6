// The embedded store: content-addressed blobs, unpacked layers (usable as overlay lowers), named
// images, cache records and build history, indexed in SQLite (WAL). Files are written to a temp
// name and renamed into place before any row points at them, so a kill -9 leaves at worst an
// unreferenced temp file that `doctor` or the next open removes.
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { copyFile, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { StrataError } from '../errors.js';
import { ADDED_COLUMNS, SCHEMA, SCHEMA_STAT_CACHE } from './schema.js';
import { IMAGE_SUFFIX, mountLayerImage } from '../snapshot/layer-mount.js';

export interface LayerInfo {
  diffId: string;
  digest: string;
  size: number;
  mediaType: string;
}

export interface ImageRecord {
  name: string;
  manifestDigest: string;
  configDigest: string;
  created: number;
}

export function defaultStoreRoot(): string {
  if (process.env.STRATA_ROOT) return process.env.STRATA_ROOT;
  const xdg = process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(xdg, 'strata');
}

export function hexOf(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new StrataError('BAD_DIGEST', `"${digest}" is not a sha256 digest`);
  return m[1]!;
}

/** Stores with layer images mounted by this process: unmounted at exit if nobody closed them. */
const liveStores = new Set<Store>();
let exitHook = false;

export class Store {
  readonly db: Database.Database;
  readonly root: string;
  /** diffId -> where this process mounted the layer's image (layerLower) */
  private readonly imageMounts = new Map<string, Promise<string>>();
  private imageMountRoot: string | undefined;

  private constructor(root: string) {
    this.root = root;
    for (const d of ['blobs/sha256', 'layers', 'mounts', 'tmp', 'state']) mkdirSync(join(root, d), { recursive: true });
    this.db = openIndex(join(root, 'index.db'));
  }

  static open(root = defaultStoreRoot()): Store {
    try {
      return new Store(root);
    } catch (e) {
      throw new StrataError('STORE_OPEN', `cannot open the store at ${root}: ${(e as Error).message}`, {
        hint: 'check the path and its permissions, or pick another with --root / STRATA_ROOT',
        cause: e,
      });
    }
  }

  close(): void {
    this.releaseLayerMounts();
    this.db.close();
  }

  now(): number {
    const fake = process.env.STRATA_FAKE_NOW;
    return fake ? Date.parse(fake) || Number(fake) : Date.now();
  }

  // ---- blobs ----
  blobPath(digest: string): string {
    return join(this.root, 'blobs', 'sha256', hexOf(digest));
  }

  hasBlob(digest: string): boolean {
    return existsSync(this.blobPath(digest));
  }

  tmpPath(prefix: string): string {
    return join(this.root, 'tmp', `${prefix}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  async putBlob(data: Buffer, mediaType: string): Promise<string> {
    const digest = 'sha256:' + createHash('sha256').update(data).digest('hex');
    if (!this.hasBlob(digest)) {
      const tmp = this.tmpPath('blob');
      await writeFile(tmp, data);
      await rename(tmp, this.blobPath(digest));
    }
    this.recordBlob(digest, data.length, mediaType);
    return digest;
  }

  /** Moves a file whose digest the caller verified into the store. */
  async adoptBlob(file: string, digest: string, mediaType: string): Promise<void> {
    const size = (await stat(file)).size;
    if (this.hasBlob(digest)) await rm(file, { force: true });
    else await rename(file, this.blobPath(digest));
    this.recordBlob(digest, size, mediaType);
  }

  /** Copies a blob file into the store, verifying it against its digest first. */
  async adoptBlobCopy(file: string, digest: string, mediaType = 'application/octet-stream'): Promise<void> {
    if (this.hasBlob(digest)) return;
    const tmp = this.tmpPath('copy');
    await copyFile(file, tmp);
    const h = createHash('sha256');
    await new Promise<void>((res, rej) => createReadStream(tmp).on('data', (c) => h.update(c)).on('end', res).on('error', rej));
    if ('sha256:' + h.digest('hex') !== digest) {
      await rm(tmp, { force: true });
      throw new StrataError('DIGEST_MISMATCH', `${file} does not match its digest ${digest}`, { hint: 'the archive is corrupt; write it again' });
    }
    await this.adoptBlob(tmp, digest, mediaType);
  }

  private recordBlob(digest: string, size: number, mediaType: string): void {
    const t = this.now();
    this.db
      .prepare('INSERT INTO blobs(digest,size,media_type,created,last_used) VALUES (?,?,?,?,?) ON CONFLICT(digest) DO UPDATE SET last_used=excluded.last_used')
      .run(digest, size, mediaType, t, t);
  }

  async readBlob(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.blobPath(digest));
    } catch {
      throw new StrataError('BLOB_MISSING', `blob ${digest} is missing from the store`, { hint: 'run `strata doctor` to repair the store' });
    }
  }

  async verifyBlob(digest: string): Promise<boolean> {
    const h = createHash('sha256');
    await new Promise<void>((res, rej) => createReadStream(this.blobPath(digest)).on('data', (c) => h.update(c)).on('end', res).on('error', rej));
    return 'sha256:' + h.digest('hex') === digest;
  }

  // ---- layers ----
  /** The layer's unpacked directory (a lower for overlay mounts), unless it is kept as an image (layerImage). */
  layerDir(diffId: string): string {
    return join(this.root, 'layers', hexOf(diffId));
  }

  /**
   * The EROFS image a layer from a blob may be kept as instead of a directory
   * (snapshot/layer-image.ts); mounted by the processes that use it as a lower (layerLower).
   */
  layerImage(diffId: string): string {
    return join(this.root, 'layers', hexOf(diffId) + IMAGE_SUFFIX);
  }

  /**
   * The directory to use as an overlay lower for the layer: its unpacked directory, or its image
   * mounted read-only for the rest of this process (once; solver/mounts.ts and the commit's lookups
   * in the lowers read it). Those mounts are below tmp/ (named with the pid, so cleanTmp removes
   * them after a kill -9) and go in close() or at exit: none stays in the store.
   */
  async layerLower(diffId: string): Promise<string> {
    const image = this.layerImage(diffId);
    if (!existsSync(image)) return this.layerDir(diffId);
    let p = this.imageMounts.get(diffId);
    if (!p) {
      this.imageMountRoot ??= this.tmpPath('layers');
      const at = join(this.imageMountRoot, hexOf(diffId));
      p = mountLayerImage(image, at).then(
        () => at,
        (e: unknown) => {
          this.imageMounts.delete(diffId);
          rmSync(at, { recursive: true, force: true });
          if (this.imageMounts.size === 0 && this.imageMountRoot) {
            rmSync(this.imageMountRoot, { recursive: true, force: true });
            this.imageMountRoot = undefined;
            liveStores.delete(this);
          }
          throw new StrataError('LAYER_IMAGE_MOUNT', `cannot mount the image of layer ${diffId}: ${(e as Error).message}`, {
            hint: 'layers from blobs are kept as EROFS images, which need mount rights (and a loop device before Linux 6.12); `strata doctor` removes the images so that the next build unpacks those layers into directories',
            cause: e,
          });
        },
      );
      this.imageMounts.set(diffId, p);
      liveStores.add(this);
      if (!exitHook) {
        exitHook = true;
        process.on('exit', () => {
          for (const st of liveStores) st.releaseLayerMounts();
        });
      }
    }
    return p;
  }

  /** Unmounts the layer images this process mounted (layerLower), now. */
  releaseLayerMounts(only?: string): void {
    const ids = only ? [only].filter((d) => this.imageMounts.has(d)) : [...this.imageMounts.keys()];
    if (!this.imageMountRoot || ids.length === 0) return;
    const dirs = ids.map((d) => join(this.imageMountRoot!, hexOf(d)));
    for (const d of ids) this.imageMounts.delete(d);
    if (spawnSync('umount', dirs).status !== 0) for (const d of dirs) spawnSync('umount', ['-l', d]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    if (this.imageMounts.size === 0) {
      rmSync(this.imageMountRoot, { recursive: true, force: true });
      this.imageMountRoot = undefined;
      liveStores.delete(this);
    }
  }

  layer(diffId: string): LayerInfo | undefined {
    const r = this.db.prepare('SELECT diff_id, blob_digest, size, media_type FROM layers WHERE diff_id=?').get(diffId) as
      | { diff_id: string; blob_digest: string; size: number; media_type: string }
      | undefined;
    return r && { diffId: r.diff_id, digest: r.blob_digest, size: r.size, mediaType: r.media_type };
  }

  /** True when the layer is recorded and on disk (its directory or its image): usable as a lower. */
  layerReady(diffId: string): boolean {
    const r = this.db.prepare('SELECT unpacked FROM layers WHERE diff_id=?').get(diffId) as { unpacked: number } | undefined;
    return !!r?.unpacked && (existsSync(this.layerImage(diffId)) || existsSync(this.layerDir(diffId)));
  }

  /**
   * Moves an unpacked layer dir into place (or drops it when another process won) and records it.
   * `diskSize`: what `dir` holds, when the caller knows it (ownDiskSize's rule); else it is measured.
   */
  async adoptLayer(dir: string, info: LayerInfo, diskSize?: number): Promise<void> {
    const dest = this.layerDir(info.diffId);
    let moved = false;
    if (existsSync(dest) || existsSync(this.layerImage(info.diffId))) await rm(dir, { recursive: true, force: true });
    else {
      try {
        await rename(dir, dest);
        moved = true;
      } catch (e) {
        if (!existsSync(dest)) throw e;
        await rm(dir, { recursive: true, force: true });
      }
    }
    this.recordLayer(info, moved && diskSize !== undefined ? diskSize : this.layerDiskSize(info.diffId));
  }

  /**
   * Moves a layer image (verified by the caller) into place, or drops it when the layer is there
   * already (as an image or a directory), and records it. The rename is the commit point: an
   * image file in `layers/` is always whole.
   */
  async adoptLayerImage(file: string, info: LayerInfo): Promise<void> {
    if (existsSync(this.layerDir(info.diffId)) || existsSync(this.layerImage(info.diffId))) await rm(file, { force: true });
    else await rename(file, this.layerImage(info.diffId));
    this.recordLayer(info, this.layerDiskSize(info.diffId));
  }

  private recordLayer(info: LayerInfo, diskSize: number): void {
    const t = this.now();
    this.db
      .prepare(
        `INSERT INTO layers(diff_id,blob_digest,size,media_type,unpacked,disk_size,created,last_used) VALUES (?,?,?,?,1,?,?,?)
         ON CONFLICT(diff_id) DO UPDATE SET unpacked=1, disk_size=excluded.disk_size, last_used=excluded.last_used`,
      )
      .run(info.diffId, info.digest, info.size, info.mediaType, diskSize, t, t);
  }

  /** Bytes the layer takes here: its image file, or what its directory holds (ownDiskSize). */
  private layerDiskSize(diffId: string): number {
    try {
      return statSync(this.layerImage(diffId)).size;
    } catch {
      return ownDiskSize(this.layerDir(diffId));
    }
  }

  /** Removes a layer's files (its directory, its image, this process's mount of it); the index rows stay. */
  removeLayerFiles(diffId: string): void {
    this.releaseLayerMounts(diffId);
    rmSync(this.layerDir(diffId), { recursive: true, force: true });
    rmSync(this.layerImage(diffId), { force: true });
  }

  touchLayers(diffIds: string[]): void {
    const q = this.db.prepare('UPDATE layers SET last_used=? WHERE diff_id=?');
    const t = this.now();
    this.db.transaction(() => {
      for (const d of diffIds) q.run(t, d);
    }).immediate();
  }

  // ---- images ----
  setImage(name: string, manifestDigest: string, configDigest: string): void {
    this.db
      .prepare('INSERT INTO images(name,manifest_digest,config_digest,created) VALUES (?,?,?,?) ON CONFLICT(name) DO UPDATE SET manifest_digest=excluded.manifest_digest, config_digest=excluded.config_digest, created=excluded.created')
      .run(name, manifestDigest, configDigest, this.now());
  }

  image(name: string): ImageRecord | undefined {
    const r = this.db.prepare('SELECT name, manifest_digest, config_digest, created FROM images WHERE name=?').get(name) as
      | { name: string; manifest_digest: string; config_digest: string; created: number }
      | undefined;
    return r && { name: r.name, manifestDigest: r.manifest_digest, configDigest: r.config_digest, created: r.created };
  }

  images(): ImageRecord[] {
    return (this.db.prepare('SELECT name, manifest_digest, config_digest, created FROM images ORDER BY name').all() as {
      name: string;
      manifest_digest: string;
      config_digest: string;
      created: number;
    }[]).map((r) => ({ name: r.name, manifestDigest: r.manifest_digest, configDigest: r.config_digest, created: r.created }));
  }

  removeImage(name: string): boolean {
    return this.db.prepare('DELETE FROM images WHERE name=?').run(name).changes > 0;
  }

  // ---- base image resolutions (tag -> digest), for offline builds ----
  /** `digest` is the platform manifest; `headDigest` what the tag itself points at (an index, maybe). */
  setResolution(ref: string, digest: string, headDigest?: string): void {
    this.db
      .prepare(
        'INSERT INTO resolutions(ref,digest,resolved_at,head_digest) VALUES (?,?,?,?) ON CONFLICT(ref) DO UPDATE SET digest=excluded.digest, resolved_at=excluded.resolved_at, head_digest=excluded.head_digest',
      )
      .run(ref, digest, this.now(), headDigest ?? null);
  }

  resolution(ref: string): { digest: string; resolvedAt: number; headDigest?: string } | undefined {
    const r = this.db.prepare('SELECT digest, resolved_at, head_digest FROM resolutions WHERE ref=?').get(ref) as
      | { digest: string; resolved_at: number; head_digest: string | null }
      | undefined;
    return r && { digest: r.digest, resolvedAt: r.resolved_at, headDigest: r.head_digest ?? undefined };
  }

  /** Removes temp files left by processes that no longer run (kill -9), unmounting their overlays first. */
  cleanTmp(): void {
    const dir = join(this.root, 'tmp');
    for (const m of staleMounts(dir)) spawnSync('umount', ['-l', m]);
    for (const name of readdirSync(dir)) {
      // tmpPath's name, or a file made next to it (`layer-PID-HEX.tmp` while a blob is written)
      const m = /-(\d+)-[0-9A-Za-z]+(?:\.[^/]*)?$/.exec(name);
      const pid = m ? Number(m[1]) : NaN;
      if (Number.isFinite(pid) && pid !== process.pid && pidAlive(pid)) continue;
      if (Number.isFinite(pid) && pid === process.pid) continue;
      try {
        rmSync(join(dir, name), { recursive: true, force: true });
      } catch {
        // A mount may still be held: doctor unmounts it.
      }
    }
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Mount points below `dir` whose owning process (pid in the temp name) is gone. */
export function staleMounts(dir: string): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4]?.replace(/\\040/g, ' ');
    if (!mp || !mp.startsWith(dir + '/')) continue;
    const m = /-(\d+)-[0-9A-Za-z]+(?:\/|$)/.exec(mp.slice(dir.length + 1));
    const pid = m ? Number(m[1]) : NaN;
    if (!Number.isFinite(pid) || (pid !== process.pid && !pidAlive(pid))) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

const OPEN_DEADLINE_MS = 30_000;

/**
 * Opens (creating or upgrading) the index. SQLite answers SQLITE_BUSY at once, without waiting on
 * the busy timeout, when two processes create a new database together (the switch of a fresh
 * rollback-journal database to WAL needs an exclusive lock, and SQLite refuses rather than risk a
 * deadlock); so the whole open is retried until a deadline.
 */
function openIndex(file: string): Database.Database {
  const deadline = Date.now() + OPEN_DEADLINE_MS;
  for (let attempt = 0; ; attempt++) {
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { timeout: OPEN_DEADLINE_MS });
      if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal') db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      // One write transaction: two processes opening a new or older store at once would otherwise
      // both see a column missing and the second ALTER fails (`duplicate column name`).
      const conn = db;
      conn
        .transaction(() => {
          conn.exec(SCHEMA);
          conn.exec(SCHEMA_STAT_CACHE);
          for (const [table, column, def] of ADDED_COLUMNS) {
            const cols = conn.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
            if (!cols.some((c) => c.name === column)) conn.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${def}`);
          }
        })
        .immediate();
      return conn;
    } catch (e) {
      db?.close();
      if (!isBusy(e) || Date.now() >= deadline) throw e;
      sleepSync(Math.min(200, 5 * 2 ** attempt) + Math.random() * 10);
    }
  }
}

function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

/** Blocks this thread (for lock waits in code that cannot yield). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Bytes of an unpacked layer that no other layer holds: apparent sizes (as `du -b`), where a file
 * hard-linked from another layer (a rerun COPY links its unchanged files from its previous layer,
 * fileops/link-reuse.ts) counts for the layer that had it first, so `du` and GC do not count it twice.
 * A file linked only within this layer (a tar hard link) counts once.
 */
export function ownDiskSize(dir: string): number {
  const r = spawnSync('find', [dir, '-printf', '%i %n %s %y\\n'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) return 0;
  let total = 0;
  const multi = new Map<string, { links: number; seen: number; size: number }>();
  for (const line of r.stdout.split('\n')) {
    if (!line) continue;
    const [ino, nlink, size, type] = line.split(' ');
    const n = Number(nlink);
    if (type !== 'f' || n <= 1) {
      total += Number(size) || 0;
      continue;
    }
    const m = multi.get(ino!);
    if (m) m.seen++;
    else multi.set(ino!, { links: n, seen: 1, size: Number(size) || 0 });
  }
  for (const m of multi.values()) if (m.seen >= m.links) total += m.size;
  return total;
}
