// Which files a COPY/ADD source word names, as a plan both the copier and the checksum read, so the
// cache key covers exactly what the step writes. Rules follow BuildKit (fsutil copy + contenthash):
// a named symlink is followed, symlinks below it are kept; wildcards use Go's filepath.Match;
// --exclude and --parents patterns use moby/patternmatcher semantics, relative to each match.
import { lstatSync, promises as fsp, readdirSync, readlinkSync, Stats } from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as path from 'node:path';
import { StrataError } from '../errors.js';
import { PatternMatcher } from './dockerignore.js';
import { BadPatternError, goCleanPath, goPathMatch } from './pattern-gopath.js';

export type IgnoreFn = (relPath: string, isDir: boolean) => boolean;
/** Whether an ignored dir may have re-included paths below it (`!` lines): true, false, or per dir. */
export type Reinclude = boolean | ((relDir: string) => boolean);

function reincludes(r: Reinclude | undefined, relDir: string): boolean {
  return typeof r === 'function' ? r(relDir) : r === true;
}

const MAX_SYMLINKS = 255;

/** Thrown by resolveInside in `escape: 'error'` mode; callers turn it into their own message. */
export class PathEscapeError extends Error {
  constructor(readonly inRootPath: string, readonly linkTarget?: string) {
    super(linkTarget !== undefined ? `symlink /${inRootPath} -> ${linkTarget} leaves the root` : `path leaves the root`);
    this.name = 'PathEscapeError';
  }
}

export interface ResolveOptions {
  /** Follow a symlink in the last component too (default true). */
  followFinal?: boolean;
  /** 'clamp': `..` stops at the root and absolute link targets restart at it (securejoin). 'error': throw PathEscapeError. */
  escape?: 'clamp' | 'error';
  /** Paths the ignore function rejects are treated as absent (a filtered build context). */
  ignore?: IgnoreFn;
  ignoreMayReinclude?: Reinclude;
}

export interface Resolved {
  host: string;
  /** Real path relative to the root, posix, '' for the root itself. */
  rel: string;
  /** lstat of the final path when it exists. */
  lstat?: Stats;
}

function segments(p: string): string[] {
  return p.split('/').filter((s) => s !== '' && s !== '.');
}

function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** Resolve an in-root path to a host path, following symlinks as if `root` were `/`; never leaves root. */
export async function resolveInside(root: string, p: string, opts: ResolveOptions = {}): Promise<Resolved> {
  const followFinal = opts.followFinal ?? true;
  const strict = opts.escape === 'error';
  const pending = segments(p);
  const cur: string[] = [];
  let missing = false;
  let links = 0;
  let last: Stats | undefined;
  while (pending.length > 0) {
    const c = pending.shift() as string;
    if (c === '..') {
      if (cur.length === 0) {
        if (strict) throw new PathEscapeError(p);
      } else cur.pop();
      last = undefined;
      continue;
    }
    cur.push(c);
    if (missing) continue;
    const host = path.join(root, ...cur);
    let st: Stats;
    try {
      st = await fsp.lstat(host);
    } catch (e) {
      const code = errnoCode(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        missing = true;
        last = undefined;
        continue;
      }
      throw e;
    }
    if (opts.ignore && opts.ignore(cur.join('/'), st.isDirectory()) && !(st.isDirectory() && reincludes(opts.ignoreMayReinclude, cur.join('/')))) {
      missing = true;
      last = undefined;
      continue;
    }
    if (st.isSymbolicLink() && (pending.length > 0 || followFinal)) {
      if (++links > MAX_SYMLINKS) {
        throw new StrataError('COPY_SYMLINK_LOOP', `too many levels of symbolic links resolving ${p}`);
      }
      const target = await fsp.readlink(host);
      const linkPath = cur.join('/');
      cur.pop();
      if (target.startsWith('/')) {
        if (strict) throw new PathEscapeError(linkPath, target);
        cur.length = 0;
      } else if (strict) {
        // A relative target may only climb as far as the root.
        let depth = cur.length;
        for (const s of segments(target)) {
          depth += s === '..' ? -1 : 1;
          if (depth < 0) throw new PathEscapeError(linkPath, target);
        }
      }
      pending.unshift(...segments(target));
      last = undefined;
      continue;
    }
    last = st;
  }
  const rel = cur.join('/');
  if (missing) return { host: path.join(root, ...cur), rel };
  if (!last) {
    // The root itself, or a path that ended in `..`.
    try {
      last = await fsp.lstat(path.join(root, ...cur));
    } catch (e) {
      const code = errnoCode(e);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
  }
  return { host: path.join(root, ...cur), rel, lstat: last };
}

/** Go's filepath.Clean on a slash path. */
export const goClean = goCleanPath;

/** True when `name` has an unescaped `*`, `?` or `[` (BuildKit's containsWildcards). */
export function containsWildcards(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const ch = name[i];
    if (ch === '\\') i++;
    else if (ch === '*' || ch === '?' || ch === '[') return true;
  }
  return false;
}

function badPattern(kind: string, pattern: string): StrataError {
  return new StrataError('COPY_BAD_PATTERN', `invalid ${kind} ${JSON.stringify(pattern)}: syntax error in pattern`, {
    hint: 'Check the [...] classes and \\ escapes; a literal [ is written [[] or \\[.',
  });
}

/** One path component against a Go filepath.Match pattern. */
function segmentMatch(pattern: string, name: string): boolean {
  try {
    return goPathMatch(pattern, name);
  } catch (e) {
    if (e instanceof BadPatternError) throw badPattern('source pattern', pattern);
    throw e;
  }
}

/** --exclude / --parents patterns: moby/patternmatcher, shared with .dockerignore. */
function patternMatcher(kind: string, patterns: string[]): PatternMatcher | undefined {
  if (patterns.every((p) => p.trim() === '')) return undefined;
  try {
    return new PatternMatcher(patterns);
  } catch (e) {
    if (e instanceof StrataError && e.code === 'DOCKERIGNORE_PATTERN') throw badPattern(kind, patterns.join(' '));
    throw e;
  }
}

export type EntryKind = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';

export interface TreeEntry {
  /** Path relative to the match root, posix; '' for the match itself. */
  rel: string;
  host: string;
  st: Stats;
  kind: EntryKind;
  link?: string;
  /** A dir kept only because something below it is selected (--parents/--exclude): created, not overwritten. */
  parentOnly?: boolean;
}

export interface SourceMatch {
  /** The match as named, relative to the source root (posix, '' = the root). */
  name: string;
  root: TreeEntry;
  /** Everything below a directory match, parents before children, names sorted. */
  entries: TreeEntry[];
}

export interface SelectedSource {
  source: string;
  wildcard: boolean;
  matches: SourceMatch[];
}

export interface SelectOptions {
  root: string;
  /** true: a stage or image rootfs (symlinks clamp at its root). false: the build context (escaping is an error). */
  rootfs?: boolean;
  ignore?: IgnoreFn;
  /** The ignore rules re-include paths below an ignored dir (`!` lines): walk ignored dirs. */
  ignoreMayReinclude?: Reinclude;
  excludes?: string[];
  parents?: boolean;
  /** Follow a symlink the source names itself (default true, as COPY does). */
  followSymlinks?: boolean;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

/** From the mode bits (Stats' isFile() and friends are a call each, thousands of times a walk). */
export function kindOf(st: Stats): EntryKind {
  switch (st.mode & S_IFMT) {
    case 0o100000:
      return 'file';
    case S_IFDIR:
      return 'dir';
    case 0o120000:
      return 'symlink';
    case 0o010000:
      return 'fifo';
    case 0o020000:
      return 'char';
    case 0o060000:
      return 'block';
    default:
      return 'socket';
  }
}

/** Linux major/minor from st_rdev (glibc's gnu_dev_major/minor). */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  return {
    major: ((lo >>> 8) & 0xfff) | ((hi & ~0xfff) >>> 0),
    minor: (lo & 0xff) | ((lo >>> 12) & ~0xff),
  };
}

/** `"/x/y"`, the way BuildKit names a source in its errors. */
export function displaySource(word: string): string {
  return goClean('/' + word);
}

function outsideContext(word: string, e: PathEscapeError): StrataError {
  const detail = e.linkTarget !== undefined
    ? `${JSON.stringify(word)} resolves through symlink "/${e.inRootPath}" -> "${e.linkTarget}", which points outside the build context`
    : `${JSON.stringify(word)} is outside the build context`;
  return new StrataError('COPY_OUTSIDE_CONTEXT', `failed to compute cache key: ${detail}`, {
    hint: 'COPY and ADD can only read files inside the build context: move the file into the context, or pass another directory with --build-context and COPY --from it.',
  });
}

function notFound(word: string, rootfs: boolean, ignored: boolean): StrataError {
  return new StrataError('COPY_NO_MATCH', `failed to compute cache key: ${JSON.stringify(displaySource(word))}: not found`, {
    hint: rootfs
      ? 'Check the path: it must exist in the stage or image you copy from.'
      : ignored
        ? 'The path exists but .dockerignore excludes it: remove the matching .dockerignore line or add a "!" exception.'
        : 'Check the path (relative to the build context root) and that .dockerignore does not exclude it.',
  });
}

class Walker {
  readonly exclude?: PatternMatcher;
  readonly pause = new Pacer();
  /** Leading literal segments of the include pattern: dirs off that path cannot hold a match. */
  private readonly includeLiteral?: string[];
  constructor(readonly opts: SelectOptions, readonly include?: PatternMatcher, includePattern?: string) {
    this.exclude = patternMatcher('--exclude pattern', opts.excludes ?? []);
    if (include && includePattern !== undefined) {
      const lit: string[] = [];
      for (const seg of includePattern.split('/')) {
        if (containsWildcards(seg) || seg.includes('\\')) break;
        lit.push(seg);
      }
      this.includeLiteral = lit;
    }
  }

  /** Whether something below the unselected dir `rel` could still match the include pattern. */
  private mayIncludeBelow(rel: string): boolean {
    const lit = this.includeLiteral;
    if (!lit) return true;
    const segs = rel.split('/');
    for (let i = 0; i < Math.min(segs.length, lit.length); i++) if (segs[i] !== lit[i]) return false;
    return true;
  }

  /** Whether an ignored dir must still be walked for re-included paths. */
  reincludes(realRel: string): boolean {
    return reincludes(this.opts.ignoreMayReinclude, realRel);
  }

  /** Real-path-relative-to-root name the ignore function sees. */
  private ignored(realRel: string, isDir: boolean): boolean {
    return this.opts.ignore !== undefined && this.opts.ignore(realRel, isDir);
  }

  async walk(dirHost: string, realRel: string, rel: string, out: TreeEntry[]): Promise<void> {
    await this.pause.maybe();
    // Default sort: UTF-16 code unit order, as a < b compares.
    const names = readdirSync(dirHost).sort();
    // Plain concatenation: dirHost is already clean and names hold no '/' (path.join per entry
    // was a good part of a walk's time).
    const hostPrefix = dirHost.endsWith('/') ? dirHost : dirHost + '/';
    const relPrefix = rel === '' ? '' : rel + '/';
    const realPrefix = realRel === '' ? '' : realRel + '/';
    const { include, exclude } = this;
    // Without an include pattern or `!` exclusions, an excluded entry cannot matter: no stat.
    const statExcluded = include !== undefined || (exclude?.exclusions ?? false);
    for (const name of names) {
      const childRel = relPrefix + name;
      const excluded = exclude ? exclude.matches(childRel) : false;
      const included = !excluded && (include ? include.matches(childRel) : true);
      if (!included && !statExcluded) continue;
      const host = hostPrefix + name;
      const st = keep(lstatSync(host));
      const kind = kindOf(st);
      const isDir = kind === 'dir';
      const childReal = this.opts.ignore ? realPrefix + name : '';
      const ignored = this.ignored(childReal, isDir);
      if (ignored && !(isDir && this.reincludes(childReal))) continue;
      if (!isDir) {
        if (!included) continue;
        const entry: TreeEntry = { rel: childRel, host, st, kind };
        if (kind === 'symlink') entry.link = readlinkSync(host);
        out.push(entry);
        continue;
      }
      if (!included && !this.mayIncludeBelow(childRel)) continue;
      const at = out.length;
      const entry: TreeEntry = { rel: childRel, host, st, kind, parentOnly: !included || undefined };
      out.push(entry);
      if (excluded && !exclude?.exclusions) {
        if (!included) out.splice(at, 1);
        continue;
      }
      await this.walk(host, childReal, childRel, out);
      // An ignored dir exists in the context only through what it re-includes; an unselected one
      // only as the parent of something selected.
      if (out.length === at + 1 && (ignored || !included)) out.splice(at, 1);
    }
  }
}

/**
 * Node 20's Stats carries four Date objects made at every lstat, which a walk never reads but would
 * keep alive with the rest (5,000 entries: 20,000 dates for the garbage collector to copy). A walk
 * keeps the numbers on an object that makes a date only when asked.
 */
const keptStats: Stats = Object.create(Stats.prototype, {
  // Rounded, as Node makes them.
  atime: { get(this: Stats) { return new Date(Math.round(this.atimeMs)); } },
  mtime: { get(this: Stats) { return new Date(Math.round(this.mtimeMs)); } },
  ctime: { get(this: Stats) { return new Date(Math.round(this.ctimeMs)); } },
  birthtime: { get(this: Stats) { return new Date(Math.round(this.birthtimeMs)); } },
}) as Stats;

function keep(st: Stats): Stats {
  const k = Object.create(keptStats) as Stats;
  k.dev = st.dev;
  k.mode = st.mode;
  k.nlink = st.nlink;
  k.uid = st.uid;
  k.gid = st.gid;
  k.rdev = st.rdev;
  k.blksize = st.blksize;
  k.ino = st.ino;
  k.size = st.size;
  k.blocks = st.blocks;
  k.atimeMs = st.atimeMs;
  k.mtimeMs = st.mtimeMs;
  k.ctimeMs = st.ctimeMs;
  k.birthtimeMs = st.birthtimeMs;
  return k;
}

/**
 * Walks use synchronous fs calls (several times faster than promises for many small files) and
 * hand the event loop back every few milliseconds so a parallel step's output keeps flowing.
 */
export class Pacer {
  private last = performance.now();
  constructor(private readonly sliceMs = 15) {}
  /** The slice is used up. Loops over many items test this and await maybe() only then (an await per item costs more than the item). */
  due(): boolean {
    return performance.now() - this.last >= this.sliceMs;
  }
  async maybe(): Promise<void> {
    const now = performance.now();
    if (now - this.last < this.sliceMs) return;
    await new Promise<void>((r) => setImmediate(r));
    this.last = performance.now();
  }
}

function splitWildcards(rel: string): { prefix: string; pattern: string } {
  const parts = rel.split('/').filter((s) => s !== '');
  const i = parts.findIndex((s) => containsWildcards(s));
  if (i < 0) return { prefix: parts.join('/'), pattern: '' };
  return { prefix: parts.slice(0, i).join('/'), pattern: parts.slice(i).join('/') };
}

/** A word, cleaned to a root-relative path; `..` past the root is an error for the build context. */
function cleanWord(word: string, rootfs: boolean): string {
  const rel = goClean(word.replace(/^\/+/, ''));
  if (rel === '..' || rel.startsWith('../')) {
    if (!rootfs) throw outsideContext(word, new PathEscapeError(rel));
    return goClean('/' + rel).slice(1);
  }
  return rel === '.' ? '' : rel;
}

async function matchFrom(
  walker: Walker,
  word: string,
  name: string,
  follow: boolean,
): Promise<SourceMatch | undefined> {
  const { opts } = walker;
  const rootfs = opts.rootfs ?? false;
  let res: Resolved;
  try {
    res = await resolveInside(opts.root, name, {
      followFinal: follow,
      escape: rootfs ? 'clamp' : 'error',
      ignore: opts.ignore,
      ignoreMayReinclude: opts.ignoreMayReinclude,
    });
  } catch (e) {
    if (e instanceof PathEscapeError) throw outsideContext(word, e);
    throw e;
  }
  if (!res.lstat) return undefined;
  const kind = kindOf(res.lstat);
  const root: TreeEntry = { rel: '', host: res.host, st: res.lstat, kind };
  if (kind === 'symlink') root.link = await fsp.readlink(res.host);
  const entries: TreeEntry[] = [];
  if (kind === 'dir') {
    await walker.walk(res.host, res.rel, '', entries);
    // A dir the ignore rules drop that re-includes nothing is not in the context.
    if (entries.length === 0 && res.rel !== '' && opts.ignore?.(res.rel, true)) return undefined;
  }
  return { name, root, entries };
}

/** Matches under `prefixHost` for a wildcard pattern: filepath.Walk order, matched dirs not entered. */
async function globWalk(
  walker: Walker,
  prefixHost: string,
  prefixReal: string,
  segs: string[],
  depth: number,
  relFromPrefix: string,
  out: string[],
): Promise<void> {
  let names: string[];
  try {
    await walker.pause.maybe();
    names = readdirSync(prefixHost).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  } catch (e) {
    const code = errnoCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') return;
    throw e;
  }
  for (const n of names) {
    if (!segmentMatch(segs[depth], n)) continue;
    const host = path.join(prefixHost, n);
    const st = lstatSync(host);
    const real = prefixReal === '' ? n : `${prefixReal}/${n}`;
    const isDir = st.isDirectory();
    if (walker.opts.ignore?.(real, isDir) && !(isDir && walker.reincludes(real))) continue;
    const rel = relFromPrefix === '' ? n : `${relFromPrefix}/${n}`;
    if (depth === segs.length - 1) out.push(rel);
    else if (isDir) await globWalk(walker, host, real, segs, depth + 1, rel, out);
  }
}

/** Resolve one source word to what it selects. Missing non-wildcard sources throw COPY_NO_MATCH. */
export async function selectSource(word: string, opts: SelectOptions): Promise<SelectedSource> {
  const rootfs = opts.rootfs ?? false;
  const follow = opts.followSymlinks ?? true;
  let includeSet: PatternMatcher | undefined;
  let includePattern: string | undefined;
  let required: string | undefined;
  let srcWord = word;
  if (opts.parents) {
    const pivot = word.indexOf('/./');
    let pattern: string;
    if (pivot >= 0) {
      srcWord = word.slice(0, pivot) || '/';
      pattern = word.slice(pivot + 3);
    } else {
      srcWord = '/';
      pattern = word;
    }
    pattern = cleanWord(pattern, rootfs);
    includeSet = pattern === '' ? undefined : patternMatcher('--parents source', [pattern]);
    includePattern = pattern;
    if (!containsWildcards(srcWord) && !containsWildcards(pattern)) {
      required = [cleanWord(srcWord, rootfs), pattern].filter((s) => s !== '').join('/');
    }
  }
  const walker = new Walker(opts, includeSet, includePattern);
  const rel = cleanWord(srcWord, rootfs);
  const { prefix, pattern } = splitWildcards(rel);
  const matches: SourceMatch[] = [];
  if (pattern === '') {
    const m = await matchFrom(walker, srcWord, rel, follow);
    if (!m) {
      const ignored = !rootfs && opts.ignore !== undefined && (await existsUnfiltered(opts.root, rel));
      throw notFound(srcWord, rootfs, ignored);
    }
    matches.push(m);
  } else {
    let pre: Resolved;
    try {
      pre = await resolveInside(opts.root, prefix, {
        escape: rootfs ? 'clamp' : 'error',
        ignore: opts.ignore,
        ignoreMayReinclude: opts.ignoreMayReinclude,
      });
    } catch (e) {
      if (e instanceof PathEscapeError) throw outsideContext(word, e);
      throw e;
    }
    if (pre.lstat?.isDirectory()) {
      const segs = pattern.split('/');
      const found: string[] = [];
      await globWalk(walker, pre.host, pre.rel, segs, 0, '', found);
      for (const f of found) {
        const name = pre.rel === '' ? f : `${pre.rel}/${f}`;
        const m = await matchFrom(walker, word, name, follow);
        if (m) matches.push(m);
      }
    } else {
      for (const seg of pattern.split('/')) segmentMatch(seg, '');
      // BuildKit's copy walks the prefix dir and fails when it is missing (a file just matches nothing).
      if (!pre.lstat) {
        const ignored = !rootfs && opts.ignore !== undefined && (await existsUnfiltered(opts.root, prefix));
        throw notFound(prefix, rootfs, ignored);
      }
    }
  }
  if (required !== undefined) {
    const req = required;
    const hit = matches.some((m) =>
      [m.root, ...m.entries].some((e) => {
        if (e.parentOnly) return false;
        const full = [m.name, e.rel].filter((s) => s !== '').join('/');
        return full === req || full.startsWith(req + '/') || (req === '' && full === '');
      }),
    );
    if (!hit) throw notFound(req, rootfs, false);
  }
  return { source: word, wildcard: pattern !== '', matches };
}

async function existsUnfiltered(root: string, rel: string): Promise<boolean> {
  try {
    const r = await resolveInside(root, rel, { escape: 'clamp' });
    return r.lstat !== undefined;
  } catch {
    return false;
  }
}
