// Cache mounts (`RUN --mount=type=cache`): named directories in the store that outlive builds.
// `locked` takes an inter-process lock (a lock directory holding the owner's pid, stolen when that
// pid is dead); `private` hands a concurrent user a fresh instance; `shared` lets everyone write.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { spawn, spawnSync } from 'node:child_process';
import { StrataError } from '../errors.js';
import { join } from 'node:path';
import { Store, pidAlive } from './store.js';
import { debugLine } from '../debug.js';

export interface CacheMountLease {
  dir: string;
  /** True when the directory was created now (a seed from `from=` applies). */
  fresh: boolean;
  release(): void;
}

export function cacheMountKey(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 32);
}

export function cacheMountDir(store: Store, id: string): string {
  return join(store.root, 'mounts', cacheMountKey(id));
}

function tryLock(lockDir: string): boolean {
  try {
    mkdirSync(lockDir);
    writeFileSync(join(lockDir, 'pid'), String(process.pid));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(lockDir, 'pid'), 'utf8'));
    } catch {
      // The owner is between mkdir and writing its pid: held. A lock that stayed without a pid
      // for long lost its owner in that gap (killed): steal it, or every later build waits forever.
      try {
        if (Date.now() - statSync(lockDir).mtimeMs < 10_000) return false;
      } catch {
        return tryLock(lockDir);
      }
      rmSync(lockDir, { recursive: true, force: true });
      return tryLock(lockDir);
    }
    if (Number.isFinite(owner) && !pidAlive(owner)) {
      rmSync(lockDir, { recursive: true, force: true });
      return tryLock(lockDir);
    }
    return false;
  }
}

const heldInProcess = new Set<string>();

export async function acquireCacheMount(store: Store, id: string, sharing: 'shared' | 'private' | 'locked', buildId = ''): Promise<CacheMountLease> {
  // An imported tarball waiting for a step to use the mount (deferCacheMountSeed) starts now;
  // one still unpacking into it (see startCacheMountSeed) is waited for.
  startDeferredSeed(store, id);
  await cacheMountSeeded(store, id);
  const base = cacheMountDir(store, id);
  const data = join(base, 'data');
  const lock = join(base, 'lock');
  const fresh = !existsSync(data);
  mkdirSync(data, { recursive: true });
  const t = store.now();
  store.db
    .prepare(
      `INSERT INTO cache_mounts(id,dir,sharing,created,last_used,last_build,builds) VALUES (?,?,?,?,?,?,1)
       ON CONFLICT(id) DO UPDATE SET last_used=excluded.last_used, sharing=excluded.sharing,
         builds=builds + (CASE WHEN last_build IS excluded.last_build THEN 0 ELSE 1 END), last_build=excluded.last_build`,
    )
    .run(id, base, sharing, t, t, buildId);
  // A lease file per user: prune and `mount rm` leave a mount alone while a live process holds it.
  const leases = join(base, 'leases');
  mkdirSync(leases, { recursive: true });
  const leaseFile = join(leases, `${process.pid}-${Math.random().toString(36).slice(2)}`);
  writeFileSync(leaseFile, '');
  const dropLease = () => rmSync(leaseFile, { force: true });
  if (sharing === 'shared') return { dir: data, fresh, release: dropLease };
  const held = (): CacheMountLease => {
    heldInProcess.add(lock);
    return {
      dir: data,
      fresh,
      release() {
        heldInProcess.delete(lock);
        rmSync(lock, { recursive: true, force: true });
        dropLease();
      },
    };
  };
  if (sharing === 'locked') {
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      if (!heldInProcess.has(lock) && tryLock(lock)) break;
      await new Promise((r) => setTimeout(r, delay));
    }
    return held();
  }
  // private: the shared instance when free, otherwise a throwaway one.
  if (!heldInProcess.has(lock) && tryLock(lock)) return held();
  const extra = store.tmpPath('cachemount');
  mkdirSync(extra, { recursive: true });
  return {
    dir: extra,
    fresh: true,
    release: () => {
      rmSync(extra, { recursive: true, force: true });
      dropLease();
    },
  };
}

/**
 * Fills a fresh cache mount from a folder (`from=STAGE,source=PATH`), keeping owners, modes,
 * times and symlinks as they are in the stage (Node's fs.cp would make everything root's).
 */
export async function seedCacheMountFrom(id: string, source: string, dir: string): Promise<void> {
  const from = statSync(source).isDirectory() ? `${source}/.` : source;
  const stderr = await new Promise<string>((res, rej) => {
    const c = spawn('cp', ['-a', '--', from, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    c.on('error', rej);
    c.on('close', (code) => res(code === 0 ? '' : err.trim() || `cp exited with ${code}`));
  });
  if (stderr) throw new StrataError('CACHE_MOUNT_SEED', `cache mount ${id}: cannot copy its from= source: ${stderr}`);
}

/** Whether a live process holds a lease on the cache mount (`except`: a lease file of our own). */
export function cacheMountInUse(store: Store, id: string, except?: string): boolean {
  const leases = join(cacheMountDir(store, id), 'leases');
  if (!existsSync(leases)) return false;
  for (const f of readdirSync(leases)) {
    if (f === except) continue;
    const pid = Number(f.split('-')[0]);
    if (Number.isFinite(pid) && pidAlive(pid)) return true;
    rmSync(join(leases, f), { force: true });
  }
  return false;
}

// Seeding from an imported cache runs in the background (design): the import verifies the
// tarball's digest, then starts a seed and returns at once, so the build starts while mounts
// unpack, all of them at the same time, in child processes (tar at a lower priority than the
// build's own work). A step of this process that uses the mount waits for its seed in
// acquireCacheMount; a step that does not use it never waits. The process does not exit before
// its seeds end (a running child keeps Node's event loop alive), so `strata cache import` and a
// build leave seeded mounts behind for `strata mount ...`; the seed writes the mount's row itself
// when done, through its own connection if the command closed the store meanwhile.
//
// Crash safety: the tarball unpacks into `import-<pid>-*` next to `data`, the bytes are hashed
// again on the way (the folder may change after the import checked it) and nothing is swapped in
// unless they match; the swap is two renames (`data` to `old-<pid>-*`, staging to `data`), so a
// kill -9 leaves either mount whole, and leftovers of dead processes are removed by the next seed.
// While it runs the seed holds a lease: prune and `mount rm` leave the mount alone, and a seed
// never replaces a mount another process started using meanwhile.

const seeding = new Map<string, { done: Promise<boolean>; lastUsed: number }>();

function seedKey(store: Store, id: string): string {
  return `${store.root}\0${id}`;
}

/** Waits for a seed of this mount started by this process; true when it replaced the contents. */
export async function cacheMountSeeded(store: Store, id: string): Promise<boolean | undefined> {
  return seeding.get(seedKey(store, id))?.done;
}

// A build with --cache-from (and no mounts= of its own) seeds a mount only when one of its steps
// uses it: seeding mounts no step runs with (a cached apt step's caches) took the cores the
// build's critical path needed. Such a seed waits here until acquireCacheMount starts it; those
// never started are named on stderr when the process ends (it has no other place to say so once
// the build's own output is done), so nobody takes a missing mount for a seeded one.

interface DeferredSeed {
  start: () => boolean;
  lastUsed: number;
  /** Where it came from, for the report (e.g. `--cache-from type=local,src=DIR`). */
  from: string;
  /** What seeds it when no step does (e.g. `strata cache import type=local,src=DIR`). */
  hint: string;
}

const deferred = new Map<string, DeferredSeed & { id: string }>();
let reportInstalled = false;

/**
 * Registers a seed that starts when a step of this process first uses the mount (or when
 * startDeferredSeeds is called). A newer tarball for the same mount replaces an older one.
 */
export function deferCacheMountSeed(store: Store, id: string, seed: DeferredSeed): void {
  const key = seedKey(store, id);
  const prev = deferred.get(key);
  if (prev && prev.lastUsed >= seed.lastUsed) return;
  deferred.set(key, { ...seed, id });
  if (!reportInstalled) {
    reportInstalled = true;
    process.once('exit', reportUnstarted);
  }
}

/** Starts the deferred seed of this mount, if there is one; true when a seed started. */
export function startDeferredSeed(store: Store, id: string): boolean {
  const key = seedKey(store, id);
  const d = deferred.get(key);
  if (!d) return false;
  deferred.delete(key);
  return d.start();
}

/** Starts every deferred seed of these mounts (`strata cache import` seeds them all); the ids that started. */
export function startDeferredSeeds(store: Store, ids: string[]): string[] {
  return ids.filter((id) => startDeferredSeed(store, id));
}

function reportUnstarted(): void {
  const bySource = new Map<string, { hint: string; ids: string[] }>();
  for (const d of deferred.values()) {
    const g = bySource.get(d.from) ?? { hint: d.hint, ids: [] };
    g.ids.push(d.id);
    bySource.set(d.from, g);
  }
  for (const [from, g] of bySource) {
    process.stderr.write(`${from}: cache mounts not seeded, as no step that ran used them: ${g.ids.join(', ')} (\`${g.hint}\` seeds them)\n`);
  }
}

/** Waits for every seed this process started (for commands that want them done before they return). */
export async function allCacheMountSeeds(): Promise<void> {
  await Promise.all([...seeding.values()].map((s) => s.done));
}

export interface SeedMeta {
  /** A step is waiting for this seed (deferred until used): tar runs at normal priority. */
  urgent?: boolean;
  digest: string;
  sharing: string;
  created: number;
  lastUsed: number;
  mediaType: string;
}

/**
 * Starts replacing a cache mount's contents with an exported tarball (opened by `open`, hashed
 * again against `meta.digest` on the way). Returns false and starts nothing when another process
 * uses the mount. Failures after the start go to `warn`; the mount then stays as it was.
 */
export function startCacheMountSeed(store: Store, id: string, open: () => Promise<NodeJS.ReadableStream>, meta: SeedMeta, warn: (message: string) => void): boolean {
  return beginSeed(store, id, open, meta, warn) !== undefined;
}

function beginSeed(store: Store, id: string, open: () => Promise<NodeJS.ReadableStream>, meta: SeedMeta, warn: (message: string) => void): Promise<boolean> | undefined {
  const key = seedKey(store, id);
  const pending = seeding.get(key);
  // Two imports of one mount (two --cache-from): the newer tarball wins, as when the first had
  // finished and written its last use; it unpacks after the pending one.
  if (pending && meta.lastUsed <= pending.lastUsed) return undefined;
  if (!pending && cacheMountInUse(store, id)) return undefined;
  const p: Promise<boolean> = (pending?.done ?? Promise.resolve(false))
    .then(() => runSeed(store, id, open, meta))
    .catch((e: unknown) => {
      warn(`cache mount ${id} not seeded: ${e instanceof Error ? e.message : String(e)}`);
      return false;
    })
    .finally(() => {
      if (seeding.get(key)?.done === p) seeding.delete(key);
    });
  seeding.set(key, { done: p, lastUsed: meta.lastUsed });
  return p;
}

/** Leftovers of seeds whose process died: staging and swapped-out directories. */
function removeStale(base: string): void {
  for (const name of readdirSync(base)) {
    const m = /^(?:import|old)-(\d+)(?:-|$)/.exec(name);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) rmSync(join(base, name), { recursive: true, force: true });
  }
}

async function runSeed(store: Store, id: string, open: () => Promise<NodeJS.ReadableStream>, meta: SeedMeta): Promise<boolean> {
  const started = performance.now();
  const base = cacheMountDir(store, id);
  const data = join(base, 'data');
  const tag = `${process.pid}-${Math.random().toString(36).slice(2)}`;
  mkdirSync(join(base, 'leases'), { recursive: true });
  const lease = `${tag}-seed`;
  writeFileSync(join(base, 'leases', lease), '');
  const staging = join(base, `import-${tag}`);
  try {
    removeStale(base);
    mkdirSync(staging, { recursive: true });
    const { decompressed, readThrough, ProcessError } = await import('../snapshot/streams.js');
    const { feed, digest } = readThrough(async () => (await open()) as AsyncIterable<Buffer>);
    // Decompressed here (zlib on the thread pool is twice as fast as gzip -d here); tar only writes.
    const tarArgs = ['-x', '-f', '-', '--numeric-owner', '--same-owner', '--xattrs', '-C', staging];
    const tar = meta.urgent ? spawn('tar', tarArgs, { stdio: ['pipe', 'ignore', 'pipe'] }) : spawn('nice', ['-n', '10', 'tar', ...tarArgs], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    tar.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-2000)));
    const exited = new Promise<number | null>((res, rej) => {
      tar.once('error', rej);
      tar.once('close', (code) => res(code));
    });
    exited.catch(() => undefined);
    let fed: unknown;
    try {
      await pipeline(Readable.from(decompressed(feed)), tar.stdin);
    } catch (e) {
      // The pipeline closed tar's stdin: tar ends by itself (at once, or with an error on a cut archive).
      fed = e;
    }
    // Whatever tar did not need is only hashed.
    feed.destroy();
    const code = await exited.catch(() => null);
    const actual = await digest.catch((e: unknown) => {
      throw new StrataError('CACHE_CORRUPT', `cache mount ${id}: cannot read tarball ${meta.digest}: ${e instanceof Error ? e.message : String(e)}`, { hint: 'export the cache again' });
    });
    if (actual !== meta.digest) {
      throw new StrataError('CACHE_CORRUPT', `cache mount ${id}: tarball ${meta.digest} does not match its digest (got ${actual}): tampered or truncated`, { hint: 'export the cache again' });
    }
    // tar stops reading at the archive's end marker and exits: the zero padding after it may still
    // be on its way (a broken pipe). That is a complete archive (the digest covered every byte).
    const stoppedEarly = code === 0 && ['EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED'].includes((fed as { code?: string } | undefined)?.code ?? '');
    if ((fed && !stoppedEarly) || code !== 0) {
      const why = code !== 0 ? new ProcessError('tar', code, stderr.trim()).message : fed instanceof Error ? fed.message : String(fed);
      throw new StrataError('CACHE_CORRUPT', `cache mount ${id}: cannot unpack the exported tarball: ${why}`, { hint: 'export the cache again' });
    }
    if (cacheMountInUse(store, id, lease)) {
      throw new StrataError('CACHE_MOUNT_BUSY', `cache mount ${id}: another process started using it while the imported tarball unpacked; its contents are kept`);
    }
    const old = join(base, `old-${tag}`);
    if (existsSync(data)) renameSync(data, old);
    renameSync(staging, data);
    const db = store.db.open ? store : Store.open(store.root);
    try {
      db.db
        .prepare(
          `INSERT INTO cache_mounts(id,dir,sharing,created,last_used,last_build,builds) VALUES (?,?,?,?,?,NULL,0)
           ON CONFLICT(id) DO UPDATE SET last_used=excluded.last_used, sharing=excluded.sharing`,
        )
        .run(id, base, meta.sharing, meta.created, meta.lastUsed);
    } finally {
      if (db !== store) db.close();
    }
    await rm(old, { recursive: true, force: true });
    debugLine(`cache mount ${id} seeded in ${((performance.now() - started) / 1000).toFixed(2)}s`);
    return true;
  } finally {
    await rm(staging, { recursive: true, force: true });
    rmSync(join(base, 'leases', lease), { force: true });
  }
}

/**
 * Replaces a cache mount's contents with an exported tarball file, when no process uses it, and
 * waits for it (the background form is startCacheMountSeed). Unverified tarballs are refused.
 */
export async function seedCacheMount(store: Store, id: string, tarball: string, meta: SeedMeta): Promise<boolean> {
  let failure: string | undefined;
  const done = beginSeed(store, id, async () => createReadStream(tarball, { highWaterMark: 1 << 20 }), meta, (m) => (failure = m));
  if (!done) return false;
  const seeded = await done;
  if (failure) throw new StrataError('CACHE_CORRUPT', failure, { hint: 'export the cache again' });
  return seeded;
}

/** Packs a cache mount into a tarball blob in the store (for export). */
export async function packCacheMount(store: Store, id: string, compression: 'gzip' | 'zstd'): Promise<{ digest: string; size: number; mediaType: string; sharing: string; created: number; lastUsed: number }> {
  const row = store.db.prepare('SELECT sharing, created, last_used FROM cache_mounts WHERE id=?').get(id) as { sharing: string; created: number; last_used: number } | undefined;
  if (!row) throw new StrataError('NO_MOUNT', `no cache mount with id "${id}" to export`, { hint: 'list them with `strata mount ls`' });
  const tmp = store.tmpPath('mountpack');
  const r = spawnSync('tar', ['-c', compression === 'zstd' ? '--zstd' : '--use-compress-program=gzip -n', '--numeric-owner', '--xattrs', '--sort=name', '--pax-option=delete=atime,delete=ctime', '-f', tmp, '-C', join(cacheMountDir(store, id), 'data'), '.'], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    throw new StrataError('EXPORT_FAILED', `cache mount ${id}: tar failed: ${r.stderr.trim()}`);
  }
  const h = createHash('sha256').update(readFileSync(tmp));
  const digest = 'sha256:' + h.digest('hex');
  const mediaType = compression === 'zstd' ? 'application/vnd.strata.cache.mount.v1.tar+zstd' : 'application/vnd.strata.cache.mount.v1.tar+gzip';
  const size = statSync(tmp).size;
  await store.adoptBlob(tmp, digest, mediaType);
  return { digest, size, mediaType, sharing: row.sharing, created: row.created, lastUsed: row.last_used };
}
