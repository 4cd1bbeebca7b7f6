// Cache mounts (`RUN --mount=type=cache`): named directories in the store that outlive builds.
// `locked` takes an inter-process lock (a lock directory holding the owner's pid, stolen when that
// pid is dead); `private` hands a concurrent user a fresh instance; `shared` lets everyone write.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { StrataError } from '../errors.js';
import { join } from 'node:path';
import type { Store } from './store.js';
import { pidAlive } from './store.js';

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

/** Whether a live process holds a lease on the cache mount. */
export function cacheMountInUse(store: Store, id: string): boolean {
  const leases = join(cacheMountDir(store, id), 'leases');
  if (!existsSync(leases)) return false;
  for (const f of readdirSync(leases)) {
    const pid = Number(f.split('-')[0]);
    if (Number.isFinite(pid) && pidAlive(pid)) return true;
    rmSync(join(leases, f), { force: true });
  }
  return false;
}

/**
 * Replaces a cache mount's contents with an exported tarball, when no local instance exists or
 * the local one was last used before the exported one. Never touches a mount in use.
 */
export async function seedCacheMount(
  store: Store,
  id: string,
  tarball: string,
  meta: { sharing: string; created: number; lastUsed: number; mediaType: string },
): Promise<boolean> {
  if (cacheMountInUse(store, id)) return false;
  const base = cacheMountDir(store, id);
  const data = join(base, 'data');
  const staging = join(base, `import-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const decompress = meta.mediaType.endsWith('zstd') ? '--zstd' : '-z';
  const r = spawnSync('tar', ['-x', decompress, '--numeric-owner', '--same-owner', '--xattrs', '-f', tarball, '-C', staging], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    throw new StrataError('CACHE_CORRUPT', `cache mount ${id}: cannot unpack the exported tarball: ${r.stderr.trim()}`, { hint: 'export the cache again' });
  }
  rmSync(data, { recursive: true, force: true });
  renameSync(staging, data);
  store.db
    .prepare(
      `INSERT INTO cache_mounts(id,dir,sharing,created,last_used,last_build,builds) VALUES (?,?,?,?,?,NULL,0)
       ON CONFLICT(id) DO UPDATE SET last_used=excluded.last_used, sharing=excluded.sharing`,
    )
    .run(id, base, meta.sharing, meta.created, meta.lastUsed);
  return true;
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
