// Remembers each file's content digest against its inode, size, mtime and ctime, so a checksum of an
// unchanged tree stats files without reading them. Any of the four changing forces a reread, which
// is why a `touch` costs a read but never changes the digest.

/**
 * A file changed moments before it was read can change again within the same timestamp tick with
 * the same size, and its stat would not show it (git's "racily clean" entries): a digest read less
 * than this long after the file's ctime is good for the build that read it only. Comfortably above
 * the kernel's coarse timestamp tick (1-10 ms). ctime, unlike mtime, cannot be set by the user, so
 * only real changes count.
 */
export const RACY_MS = 100;

export interface StatCacheEntry {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  digest: string;
  /**
   * The content was read at least RACY_MS after the ctime (false: trust it for this build only).
   * Absent: the cache decides from the time it is told.
   */
  settled?: boolean;
}

/**
 * The checksum of one selection (a source list under a root) and a fingerprint of the stat of every
 * entry it selected then: the same fingerprint later means the same checksum, with no file looked up.
 */
export interface SelectionRecord {
  fingerprint: string;
  digest: string;
}

export interface StatCache {
  get(path: string): StatCacheEntry | undefined;
  set(path: string, entry: StatCacheEntry): void;
  /** The record last kept for a selection key; caches without records leave both out. */
  selection?(key: string): SelectionRecord | undefined;
  /** Called only when every file's digest in the selection was settled. */
  setSelection?(key: string, record: SelectionRecord): void;
}

export class MemoryStatCache implements StatCache {
  private readonly map = new Map<string, StatCacheEntry>();
  private readonly selections = new Map<string, SelectionRecord>();

  get(path: string): StatCacheEntry | undefined {
    return this.map.get(path);
  }

  set(path: string, entry: StatCacheEntry): void {
    this.map.set(path, entry);
  }

  selection(key: string): SelectionRecord | undefined {
    return this.selections.get(key);
  }

  setSelection(key: string, record: SelectionRecord): void {
    this.selections.set(key, record);
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
