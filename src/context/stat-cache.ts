// Remembers each file's content digest against its inode, size, mtime and ctime, so a checksum of an
// unchanged tree stats files without reading them. Any of the four changing forces a reread, which
// is why a `touch` costs a read but never changes the digest.
export interface StatCacheEntry {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  digest: string;
}

export interface StatCache {
  get(path: string): StatCacheEntry | undefined;
  set(path: string, entry: StatCacheEntry): void;
}

export class MemoryStatCache implements StatCache {
  private readonly map = new Map<string, StatCacheEntry>();

  get(path: string): StatCacheEntry | undefined {
    return this.map.get(path);
  }

  set(path: string, entry: StatCacheEntry): void {
    this.map.set(path, entry);
  }

  get size(): number {
    return this.map.size;
  }

  /** Plain data, for a caller that persists the cache between builds. */
  toJSON(): Record<string, StatCacheEntry> {
    return Object.fromEntries(this.map);
  }

  static fromJSON(data: Record<string, StatCacheEntry>): MemoryStatCache {
    const c = new MemoryStatCache();
    for (const [k, v] of Object.entries(data)) c.set(k, v);
    return c;
  }
}
