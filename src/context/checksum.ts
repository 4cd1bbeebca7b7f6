// The content checksum that goes into a COPY/ADD/bind-mount cache key: exactly the files the step
// selects (after .dockerignore, --exclude, --parents), by path, type, mode and content. Never
// times or the host owner, so a `touch` or a fresh clone keeps the key; uid/gid count only for
// sources from a stage or image rootfs, where COPY keeps them.
import * as crypto from 'node:crypto';
import { closeSync, createReadStream, readSync } from 'node:fs';
import { openNoAtime } from '../open-noatime.js';
import { RACY_MS, type StatCache } from './stat-cache.js';
import { deviceNumbers, Pacer, selectSource, type IgnoreFn, type Reinclude, type SelectedSource, type TreeEntry } from './walk.js';

export type { SelectionRecord, StatCache, StatCacheEntry } from './stat-cache.js';
export { MemoryStatCache, RACY_MS } from './stat-cache.js';

export interface FileEntry {
  /** Relative to the source root, posix; '.' for the root itself. */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  /** Permission bits plus setuid/setgid/sticky. */
  mode: number;
  size: number;
  /** sha256 of the content (files), of the link target (symlinks), of kind and device numbers (devices, fifos); '' for dirs. */
  contentDigest: string;
  /** Only for rootfs sources, where the copy keeps owners. */
  uid?: number;
  gid?: number;
  /** Hard link: the first selected path with the same inode. */
  linkTo?: string;
  /** Only for rootfs sources: extended attributes, hex values. */
  xattrs?: Record<string, string>;
}

export interface ChecksumOptions {
  root: string;
  ignore?: IgnoreFn;
  ignoreMayReinclude?: Reinclude;
  sources: string[];
  excludes?: string[];
  parents?: boolean;
  followSymlinks?: boolean;
  /** Sources from a stage or image rootfs: symlinks resolve inside root, owners and xattrs count. */
  srcIsRootfs?: boolean;
  statCache?: StatCache;
}

export interface ChecksumResult {
  digest: string;
  files: FileEntry[];
  /** Bytes of file content read (0 when the stat cache answered for every file). */
  bytesRead: number;
  /** What each source word selected (in `sources` order), as the walk found it: what the step copies. */
  selection: SelectedSource[];
  /** Files whose digest was read moments after they changed (RACY_MS): their stat cannot vouch for them. */
  racy: RacyFile[];
}

export interface RacyFile {
  host: string;
  size: number;
  digest: string;
}

/** A selection whose every entry has the stat it had when the stat cache recorded its checksum. */
export interface UnchangedChecksum {
  digest: string;
  files?: undefined;
  bytesRead: 0;
  selection: SelectedSource[];
  racy: RacyFile[];
}

const VERSION = 'strata-sources-v1';
const { createHash } = crypto;
const SMALL_FILE = 256 * 1024;

/** One-shot hashing (Node 20.12+) skips a Hash object per file: a third of a rehash of many small files. */
const oneShot: ((data: Buffer | string) => string) | undefined =
  typeof crypto.hash === 'function' ? (data) => crypto.hash('sha256', data, 'hex') : undefined;

function sha256(data: string | Buffer): string {
  return 'sha256:' + (oneShot ? oneShot(data) : createHash('sha256').update(data).digest('hex'));
}

const EMPTY_SHA = sha256('');
let smallBuffer: Buffer | undefined;

/**
 * A small file read whole into a reused buffer; undefined when it turns out bigger than that. A
 * read that returns short with exactly the size the walk saw is the end of the file: no second
 * read to be told so (about 15% of the time of hashing many small files). Any other short read goes on
 * to the end as before.
 */
function hashSmallFile(p: string, size: number): { digest: string; bytes: number } | undefined {
  smallBuffer ??= Buffer.allocUnsafe(SMALL_FILE);
  const buf = smallBuffer;
  const fd = openNoAtime(p);
  try {
    let n = 0;
    for (;;) {
      if (n === buf.length) return undefined;
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
      if (n === size && n < buf.length) break;
    }
    return { digest: sha256(buf.subarray(0, n)), bytes: n };
  } finally {
    closeSync(fd);
  }
}

async function hashLargeFile(p: string): Promise<{ digest: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  // the stream takes the fd (and closes it)
  for await (const chunk of createReadStream('', { fd: openNoAtime(p), highWaterMark: 1024 * 1024 })) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { digest: 'sha256:' + h.digest('hex'), bytes };
}

let xattr: typeof import('fs-xattr') | undefined;

/**
 * Loads fs-xattr (a native addon, a few ms) for sources from a rootfs, the only ones whose xattrs
 * count; context checksums never pay for it. Call before readXattrs.
 */
export async function loadXattrs(): Promise<void> {
  xattr ??= await import('fs-xattr');
}

/** Extended attributes worth carrying: overlayfs bookkeeping and SELinux labels are host facts. */
export function readXattrs(p: string): Record<string, string> | undefined {
  if (!xattr) throw new Error('readXattrs: loadXattrs() was not awaited');
  const { getAttributeSync, listAttributesSync } = xattr;
  let names: string[];
  try {
    names = listAttributesSync(p);
  } catch {
    return undefined;
  }
  const keep = names.filter((n) => !/^(trusted|user)\.overlay\./.test(n) && n !== 'security.selinux').sort();
  if (keep.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const n of keep) {
    try {
      out[n] = getAttributeSync(p, n).toString('hex');
    } catch {
      // Vanished or unreadable: the copy would skip it too.
    }
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function entryType(e: TreeEntry): FileEntry['type'] {
  switch (e.kind) {
    case 'file':
    case 'socket': // the copy writes a socket as an empty regular file, as BuildKit's context transfer does
      return 'file';
    case 'dir':
      return 'dir';
    case 'symlink':
      return 'symlink';
    default:
      return 'other';
  }
}

/** Checksum what `sources` select under `root` (the build context, or a rootfs with srcIsRootfs). */
export function checksumSources(opts: ChecksumOptions): Promise<ChecksumResult> {
  return checksum(opts, false) as Promise<ChecksumResult>;
}

/**
 * As checksumSources, except that a selection the stat cache recorded, whose entries all still
 * have the stat they had then (path, type, mode, inode, size, mtime, ctime, links, link target),
 * gets the recorded checksum back without a file list: no per-file lookups, lines or hashing.
 */
export function checksumSourcesUnlessUnchanged(opts: ChecksumOptions): Promise<ChecksumResult | UnchangedChecksum> {
  return checksum(opts, true);
}

/** Selections are recorded per root and words: the fingerprint covers what the walk found. */
function selectionKey(opts: ChecksumOptions): string {
  return sha256(JSON.stringify([VERSION, opts.root, opts.sources, opts.excludes ?? [], opts.parents ?? false, opts.followSymlinks ?? true]));
}

const FINGERPRINT_FIELDS = 9;

/**
 * Everything the checksum lines of a context selection are made of, with each file's content
 * stood for by its stat (as the stat cache vouches for it). Directories count by name and mode only:
 * their entries are listed one by one, so a file coming and going in an ignored part of a directory
 * (an editor's swap file, `.git`) leaves the fingerprint alone. Numbers go to the hash as one typed
 * array and names as one string: the fingerprint of 5,000 entries costs no object per entry.
 */
function statFingerprint(selected: SelectedSource[]): string {
  let n = 0;
  for (const s of selected) for (const m of s.matches) n += 1 + m.entries.length;
  const nums = new Float64Array(n * FINGERPRINT_FIELDS);
  // NUL cannot occur in a file name or a link target; words and match names are JSON.
  const text: string[] = [];
  let j = 0;
  for (const s of selected) {
    text.push(JSON.stringify([s.source, s.wildcard, s.matches.length]));
    for (const m of s.matches) {
      text.push(JSON.stringify([m.name, m.entries.length]));
      for (let k = -1; k < m.entries.length; k++) {
        const e = k < 0 ? m.root : m.entries[k]!;
        const st = e.st;
        text.push(e.rel, e.link ?? '');
        nums[j] = st.mode;
        if (e.kind === 'file') {
          nums[j + 1] = st.ino;
          nums[j + 2] = st.dev;
          nums[j + 3] = st.size;
          nums[j + 4] = st.mtimeMs;
          nums[j + 5] = st.ctimeMs;
          nums[j + 6] = st.nlink;
        }
        nums[j + 7] = st.rdev;
        nums[j + 8] = e.parentOnly ? 1 : 0;
        j += FINGERPRINT_FIELDS;
      }
    }
  }
  return createHash('sha256').update(text.join('\0')).update(nums).digest('hex');
}

/**
 * Reads racily hashed files again: the first whose content is not what its digest says, or
 * undefined when all still are; with the bytes read.
 */
export async function changedRacyFile(files: readonly RacyFile[]): Promise<{ changed?: RacyFile; bytesRead: number }> {
  let bytesRead = 0;
  for (const f of files) {
    const r = (f.size < SMALL_FILE && hashSmallFile(f.host, f.size)) || (await hashLargeFile(f.host));
    bytesRead += r.bytes;
    if (r.digest !== f.digest) return { changed: f, bytesRead };
  }
  return { bytesRead };
}

/** What each source word selects under opts.root (the walk; no content is read). */
async function walkSources(opts: ChecksumOptions): Promise<SelectedSource[]> {
  const rootfs = opts.srcIsRootfs ?? false;
  const selected: SelectedSource[] = [];
  for (const word of opts.sources) {
    // ADD's URL sources are no files of the root: their words count, their content is the
    // downloader's business (its digest belongs in the key beside this one).
    if (/^https?:\/\//.test(word)) {
      selected.push({ source: word, wildcard: false, matches: [] });
      continue;
    }
    selected.push(
      await selectSource(word, {
        root: opts.root,
        rootfs,
        ignore: opts.ignore,
        ignoreMayReinclude: opts.ignoreMayReinclude,
        excludes: opts.excludes,
        parents: opts.parents,
        followSymlinks: opts.followSymlinks,
      }),
    );
  }
  return selected;
}

async function checksum(opts: ChecksumOptions, reuse: boolean): Promise<ChecksumResult | UnchangedChecksum> {
  // Content read from here on was read at least this late (for the racy rule).
  const started = Date.now();
  if (opts.srcIsRootfs) await loadXattrs();
  return fromSelection(opts, await walkSources(opts), reuse, started);
}

/**
 * The full checksum (with its file list) of a selection an earlier call walked: for a selection
 * that came back unchanged when its list is needed after all, without walking it again.
 */
export function checksumSelection(opts: ChecksumOptions, selection: SelectedSource[]): Promise<ChecksumResult> {
  return fromSelection(opts, selection, false, Date.now()) as Promise<ChecksumResult>;
}

async function fromSelection(opts: ChecksumOptions, selected: SelectedSource[], reuse: boolean, started: number): Promise<ChecksumResult | UnchangedChecksum> {
  const rootfs = opts.srcIsRootfs ?? false;
  const cache = opts.statCache;
  const memo = !rootfs && cache?.selection && cache.setSelection ? { key: selectionKey(opts), fingerprint: statFingerprint(selected) } : undefined;
  const recorded = memo && cache!.selection!(memo.key);
  if (reuse && recorded && recorded.fingerprint === memo.fingerprint) return { digest: recorded.digest, bytesRead: 0, selection: selected, racy: [] };

  interface Item {
    e: TreeEntry;
    f: FileEntry;
    matchRoot: boolean;
  }
  const items: Item[] = [];
  const inodes = new Map<string, string>();
  for (const s of selected) {
    for (const m of s.matches) {
      const prefix = m.name === '' ? '' : m.name + '/';
      for (let k = -1; k < m.entries.length; k++) {
        const e = k < 0 ? m.root : m.entries[k]!;
        const p = e.rel === '' ? m.name || '.' : prefix + e.rel;
        const st = e.st;
        const type = entryType(e);
        const f: FileEntry = {
          path: p,
          type,
          mode: st.mode & 0o7777,
          size: type === 'file' && e.kind === 'file' ? st.size : 0,
          contentDigest: '',
        };
        if (rootfs) {
          f.uid = st.uid;
          f.gid = st.gid;
        }
        if (e.kind === 'symlink') {
          f.contentDigest = sha256(e.link ?? '');
          f.size = Buffer.byteLength(e.link ?? '');
        } else if (e.kind === 'socket') f.contentDigest = EMPTY_SHA;
        else if (type === 'other') {
          const { major, minor } = deviceNumbers(st.rdev);
          f.contentDigest = sha256(`${e.kind}:${major}:${minor}`);
        }
        if (e.kind === 'file' && st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          const first = inodes.get(key);
          if (first !== undefined) f.linkTo = first;
          else inodes.set(key, p);
        }
        items.push({ e, f, matchRoot: e.rel === '' });
      }
    }
  }

  let bytesRead = 0;
  // Every file digest is one a later build may trust (none read within RACY_MS of its change).
  let settled = true;
  const racy: RacyFile[] = [];
  const pause = new Pacer();
  for (let k = 0; k < items.length; k++) {
    if ((k & 63) === 0 && pause.due()) await pause.maybe();
    const { e, f } = items[k]!;
    if (rootfs && (e.kind === 'file' || e.kind === 'dir')) f.xattrs = readXattrs(e.host);
    if (e.kind !== 'file' || f.linkTo !== undefined) continue;
    const st = e.st;
    const hit = cache?.get(e.host);
    // A digest read racily (moments after the file changed) serves until the file could have
    // changed unseen since; then the file is read again.
    if (hit && hit.ino === st.ino && hit.size === st.size && hit.mtimeMs === st.mtimeMs && hit.ctimeMs === st.ctimeMs && (hit.settled !== false || started - st.ctimeMs < RACY_MS)) {
      f.contentDigest = hit.digest;
      if (hit.settled === false) {
        settled = false;
        racy.push({ host: e.host, size: st.size, digest: hit.digest });
      }
      continue;
    }
    // Small files synchronously (no promise per file), big ones streamed.
    const r = (st.size < SMALL_FILE && hashSmallFile(e.host, st.size)) || (await hashLargeFile(e.host));
    bytesRead += r.bytes;
    f.contentDigest = r.digest;
    const fileSettled = started - st.ctimeMs >= RACY_MS;
    if (!fileSettled) {
      settled = false;
      racy.push({ host: e.host, size: st.size, digest: r.digest });
    }
    cache?.set(e.host, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, digest: r.digest, settled: fileSettled });
  }

  // The same lines as ever (keys must not change), handed to the hash in batches.
  const h = createHash('sha256');
  let lines: string[] = [VERSION, JSON.stringify({ rootfs, parents: opts.parents ?? false, follow: opts.followSymlinks ?? true })];
  const push = (line: string) => {
    lines.push(line);
    if (lines.length >= 1024) {
      h.update(lines.join('\n') + '\n');
      lines = [];
    }
  };
  let i = 0;
  for (const s of selected) {
    push(JSON.stringify(['S', s.source, s.wildcard]));
    for (const m of s.matches) {
      push(JSON.stringify(['M', m.name, m.root.kind]));
      for (let n = 0; n < 1 + m.entries.length; n++, i++) {
        const { f, matchRoot, e } = items[i]!;
        // A directory named as a source only lends its contents (the copy makes the destination dir
        // itself), so its own mode is not part of the result.
        const mode = matchRoot && f.type === 'dir' ? 0 : f.mode;
        push(JSON.stringify([f.path, f.type, mode, f.size, f.contentDigest, f.uid ?? null, f.gid ?? null, f.linkTo ?? null, f.xattrs ?? null, e.parentOnly ?? false]));
      }
    }
  }
  if (lines.length) h.update(lines.join('\n') + '\n');
  const digest = 'sha256:' + h.digest('hex');
  if (memo && settled && (recorded?.fingerprint !== memo.fingerprint || recorded.digest !== digest)) {
    cache!.setSelection!(memo.key, { fingerprint: memo.fingerprint, digest });
  }
  return { digest, files: items.map((x) => x.f), bytesRead, selection: selected, racy };
}

/** Sources inside a stage or image rootfs (COPY --from): symlinks resolve inside it, owners count. */
export function checksumRootfsSources(opts: Omit<ChecksumOptions, 'srcIsRootfs' | 'ignore' | 'ignoreMayReinclude'>): Promise<ChecksumResult> {
  return checksumSources({ ...opts, srcIsRootfs: true });
}
