// The context stat cache, persisted in the store index: a rebuild hashes only files whose inode,
// size, mtime or ctime changed since the last build that read them.
import type { StatCache, StatCacheEntry } from '../context/stat-cache.js';
import type { Store } from './store.js';

/** Comfortably above the kernel's coarse timestamp tick (1-10 ms). */
export const RACY_MS = 100;

type Row = [path: string, ino: number, size: number, mtime: number, ctime: number, digest: string];

export class PersistentStatCache implements StatCache {
  /** Rows as SQLite returns them in raw mode; an entry object is made only for a path asked for. */
  private readonly rows = new Map<string, Row>();
  private readonly map = new Map<string, StatCacheEntry>();
  private readonly dirty = new Map<string, StatCacheEntry>();

  constructor(
    private readonly store: Store,
    prefixes: string[],
  ) {
    const q = store.db.prepare('SELECT path, ino, size, mtime, ctime, digest FROM stat_cache WHERE path >= ? AND path < ?').raw();
    for (const p of prefixes) {
      const base = p.endsWith('/') ? p : p + '/';
      for (const r of q.all(base, base.slice(0, -1) + '0') as Row[]) this.rows.set(r[0], r);
    }
  }

  get(path: string): StatCacheEntry | undefined {
    const e = this.map.get(path);
    if (e) return e;
    const r = this.rows.get(path);
    return r && { ino: r[1], size: r[2], mtimeMs: r[3], ctimeMs: r[4], digest: r[5] };
  }

  set(path: string, entry: StatCacheEntry): void {
    this.map.set(path, entry);
    // A file changed moments before it was read can change again within the same timestamp tick
    // with the same size, and its stat would not show it: keep such a digest for this build only
    // and hash the file again next time (git's "racily clean" entries). ctime, unlike mtime, cannot
    // be set by the user, so only real changes count.
    if (Date.now() - entry.ctimeMs < RACY_MS) this.dirty.delete(path);
    else this.dirty.set(path, entry);
  }

  /** Writes what changed in one transaction. */
  flush(): void {
    if (this.dirty.size === 0) return;
    const ins = this.store.db.prepare(
      'INSERT INTO stat_cache(path,ino,size,mtime,ctime,digest) VALUES (?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET ino=excluded.ino, size=excluded.size, mtime=excluded.mtime, ctime=excluded.ctime, digest=excluded.digest',
    );
    this.store.db.transaction(() => {
      for (const [p, e] of this.dirty) ins.run(p, e.ino, e.size, e.mtimeMs, e.ctimeMs, e.digest);
    }).immediate();
    this.dirty.clear();
  }
}
