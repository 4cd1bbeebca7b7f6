// Cache mounts (`RUN --mount=type=cache`): named directories in the store that outlive builds.
// `locked` takes an inter-process lock (a lock directory holding the owner's pid, stolen when that
// pid is dead); `private` hands a concurrent user a fresh instance; `shared` lets everyone write.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
      // The owner is between mkdir and writing its pid; treat as held.
      return false;
    }
    if (Number.isFinite(owner) && !pidAlive(owner)) {
      rmSync(lockDir, { recursive: true, force: true });
      return tryLock(lockDir);
    }
    return false;
  }
}

const heldInProcess = new Set<string>();

export async function acquireCacheMount(store: Store, id: string, sharing: 'shared' | 'private' | 'locked'): Promise<CacheMountLease> {
  const base = cacheMountDir(store, id);
  const data = join(base, 'data');
  const lock = join(base, 'lock');
  const fresh = !existsSync(data);
  mkdirSync(data, { recursive: true });
  const t = store.now();
  store.db
    .prepare('INSERT INTO cache_mounts(id,dir,created,last_used) VALUES (?,?,?,?) ON CONFLICT(id) DO UPDATE SET last_used=excluded.last_used')
    .run(id, base, t, t);
  if (sharing === 'shared') return { dir: data, fresh, release() {} };
  if (sharing === 'locked') {
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      if (!heldInProcess.has(lock) && tryLock(lock)) break;
      await new Promise((r) => setTimeout(r, delay));
    }
    heldInProcess.add(lock);
    return {
      dir: data,
      fresh,
      release() {
        heldInProcess.delete(lock);
        rmSync(lock, { recursive: true, force: true });
      },
    };
  }
  // private: the shared instance when free, otherwise a throwaway one.
  if (!heldInProcess.has(lock) && tryLock(lock)) {
    heldInProcess.add(lock);
    return {
      dir: data,
      fresh,
      release() {
        heldInProcess.delete(lock);
        rmSync(lock, { recursive: true, force: true });
      },
    };
  }
  const extra = store.tmpPath('cachemount');
  mkdirSync(extra, { recursive: true });
  return { dir: extra, fresh: true, release: () => rmSync(extra, { recursive: true, force: true }) };
}
