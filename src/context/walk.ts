// Which files a COPY/ADD source word names, as a plan both the copier and the checksum read, so the
// cache key covers exactly what the step writes. Rules follow BuildKit (fsutil copy + contenthash):
// a named symlink is followed, symlinks below it are kept; wildcards use Go's filepath.Match;
// --exclude and --parents patterns use moby/patternmatcher semantics, relative to each match.
import { promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { StrataError } from '../errors.js';

export type IgnoreFn = (relPath: string, isDir: boolean) => boolean;

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
  ignoreMayReinclude?: boolean;
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
    if (opts.ignore && opts.ignore(cur.join('/'), st.isDirectory()) && !(st.isDirectory() && opts.ignoreMayReinclude)) {
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
export function goClean(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const s of p.split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(s);
  }
  const joined = out.join('/');
  if (rooted) return '/' + joined;
  return joined === '' ? '.' : joined;
}

/** True when `name` has an unescaped `*`, `?` or `[` (BuildKit's containsWildcards). */
export function containsWildcards(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const ch = name[i];
    if (ch === '\\') i++;
    else if (ch === '*' || ch === '?' || ch === '[') return true;
  }
  return false;
}

const RE_SPECIAL = /[.*+?^${}()|[\]\\/]/g;
function reEscape(s: string): string {
  return s.replace(RE_SPECIAL, '\\$&');
}

/** Go filepath.Match pattern as an anchored RegExp; throws COPY_BAD_PATTERN on a malformed one. */
export function globToRegExp(pattern: string): RegExp {
  let re = '^';
  const bad = (): never => {
    throw new StrataError('COPY_BAD_PATTERN', `syntax error in pattern ${JSON.stringify(pattern)}`, {
      hint: 'Escape a literal [ as [[] and check that every [ has a closing ].',
    });
  };
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '\\') {
      if (i + 1 >= pattern.length) bad();
      re += reEscape(pattern[++i]);
    } else if (ch === '[') {
      i++;
      let cls = '[';
      if (pattern[i] === '^') {
        cls += '^';
        i++;
      }
      let n = 0;
      for (;;) {
        if (i >= pattern.length) bad();
        let c = pattern[i];
        if (c === ']' && n > 0) break;
        if (c === '-' && n === 0) bad();
        if (c === '\\') {
          i++;
          if (i >= pattern.length) bad();
          c = pattern[i];
        }
        cls += reEscape(c);
        i++;
        n++;
        if (pattern[i] === '-') {
          i++;
          if (i >= pattern.length || pattern[i] === ']') bad();
          let hi = pattern[i];
          if (hi === '\\') {
            i++;
            if (i >= pattern.length) bad();
            hi = pattern[i];
          }
          if (hi < c) bad();
          cls += '-' + reEscape(hi);
          i++;
        }
      }
      re += cls + ']';
    } else re += reEscape(ch);
  }
  return new RegExp(re + '$', 's');
}

interface CompiledPattern {
  exclusion: boolean;
  test: (p: string) => boolean;
}

/** moby/patternmatcher semantics (`**`, `!` exclusions, a match on a parent dir covers its contents). */
export class PatternSet {
  private readonly patterns: CompiledPattern[] = [];
  readonly hasExclusions: boolean = false;

  constructor(patterns: string[]) {
    for (const raw of patterns) {
      let p = raw.trim();
      if (p === '') continue;
      p = goClean(p);
      let exclusion = false;
      if (p.startsWith('!')) {
        if (p.length === 1) throw new StrataError('COPY_BAD_PATTERN', 'illegal exclusion pattern: "!"');
        exclusion = true;
        p = p.slice(1);
        this.hasExclusions = true;
      }
      this.patterns.push({ exclusion, test: compilePattern(p) });
    }
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /** MatchesOrParentMatches: `file` or one of its parent dirs matches, and no later exclusion says otherwise. */
  matches(file: string): boolean {
    const parents: string[] = [];
    const parts = file.split('/');
    for (let i = 1; i < parts.length; i++) parents.push(parts.slice(0, i).join('/'));
    let matched = false;
    for (const pat of this.patterns) {
      if (pat.exclusion !== matched) continue;
      let m = pat.test(file);
      if (!m) m = parents.some((pp) => pat.test(pp));
      if (m) matched = !pat.exclusion;
    }
    return matched;
  }
}

function compilePattern(pattern: string): (p: string) => boolean {
  globToRegExp(pattern.replace(/\*\*/g, '*')); // syntax check, as patternmatcher does with filepath.Match
  let re = '^';
  let type: 'exact' | 'prefix' | 'suffix' | 'regexp' = 'exact';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        const start = i;
        i++;
        if (pattern[i + 1] === '/') i++;
        if (i + 1 >= pattern.length) {
          if (type === 'exact') type = 'prefix';
          else {
            re += '.*';
            type = 'regexp';
          }
        } else {
          re += '(.*/)?';
          type = 'regexp';
        }
        if (start === 0) type = 'suffix';
      } else {
        re += '[^/]*';
        type = 'regexp';
      }
    } else if (ch === '?') {
      re += '[^/]';
      type = 'regexp';
    } else if (ch === '\\') {
      if (i + 1 < pattern.length) {
        re += reEscape(pattern[++i]);
        type = 'regexp';
      } else re += '\\\\';
    } else if (ch === '[' || ch === ']') {
      re += ch;
      type = 'regexp';
    } else re += reEscape(ch);
  }
  switch (type) {
    case 'exact':
      return (p) => p === pattern;
    case 'prefix': {
      const pre = pattern.slice(0, -2);
      return (p) => p.startsWith(pre);
    }
    case 'suffix': {
      const suf = pattern.slice(2);
      return (p) => p.endsWith(suf) || (suf.startsWith('/') && p === suf.slice(1));
    }
    default: {
      const rx = new RegExp(re + '$', 's');
      return (p) => rx.test(p);
    }
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
  ignoreMayReinclude?: boolean;
  excludes?: string[];
  parents?: boolean;
  /** Follow a symlink the source names itself (default true, as COPY does). */
  followSymlinks?: boolean;
}

export function kindOf(st: Stats): EntryKind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
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
  readonly include?: PatternSet;
  readonly exclude?: PatternSet;
  constructor(readonly opts: SelectOptions, include?: PatternSet) {
    this.include = include && !include.empty ? include : undefined;
    const ex = new PatternSet(opts.excludes ?? []);
    this.exclude = ex.empty ? undefined : ex;
  }

  /** Real-path-relative-to-root name the ignore function sees. */
  private ignored(realRel: string, isDir: boolean): boolean {
    return this.opts.ignore !== undefined && this.opts.ignore(realRel, isDir);
  }

  async walk(dirHost: string, realRel: string, rel: string, out: TreeEntry[]): Promise<void> {
    const names = (await fsp.readdir(dirHost)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const decided = names.map((name) => {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      let include = this.include ? this.include.matches(childRel) : true;
      const excluded = this.exclude ? this.exclude.matches(childRel) : false;
      if (excluded) include = false;
      const canSkip = !include && !this.include && !(this.exclude?.hasExclusions ?? false);
      return { name, childRel, include, excluded, canSkip };
    });
    const stats = await Promise.all(
      decided.map((d) => (d.canSkip ? undefined : fsp.lstat(path.join(dirHost, d.name)))),
    );
    for (let i = 0; i < decided.length; i++) {
      const d = decided[i];
      const st = stats[i];
      if (!st) continue;
      const host = path.join(dirHost, d.name);
      const childReal = realRel === '' ? d.name : `${realRel}/${d.name}`;
      const isDir = st.isDirectory();
      const ignored = this.ignored(childReal, isDir);
      if (ignored && !(isDir && this.opts.ignoreMayReinclude)) continue;
      const kind = kindOf(st);
      if (!isDir) {
        if (!d.include) continue;
        const entry: TreeEntry = { rel: d.childRel, host, st, kind };
        if (kind === 'symlink') entry.link = await fsp.readlink(host);
        out.push(entry);
        continue;
      }
      const at = out.length;
      const entry: TreeEntry = { rel: d.childRel, host, st, kind, parentOnly: !d.include || undefined };
      out.push(entry);
      if (d.excluded && !this.exclude?.hasExclusions) {
        if (!d.include) out.splice(at, 1);
        continue;
      }
      await this.walk(host, childReal, d.childRel, out);
      // An ignored dir exists in the context only through what it re-includes; an unselected one
      // only as the parent of something selected.
      if (out.length === at + 1 && (ignored || !d.include)) out.splice(at, 1);
    }
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
  segs: RegExp[],
  depth: number,
  relFromPrefix: string,
  out: string[],
): Promise<void> {
  let names: string[];
  try {
    names = (await fsp.readdir(prefixHost)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  } catch (e) {
    const code = errnoCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') return;
    throw e;
  }
  for (const n of names) {
    if (!segs[depth].test(n)) continue;
    const host = path.join(prefixHost, n);
    const st = await fsp.lstat(host);
    const real = prefixReal === '' ? n : `${prefixReal}/${n}`;
    const isDir = st.isDirectory();
    if (walker.opts.ignore?.(real, isDir) && !(isDir && walker.opts.ignoreMayReinclude)) continue;
    const rel = relFromPrefix === '' ? n : `${relFromPrefix}/${n}`;
    if (depth === segs.length - 1) out.push(rel);
    else if (isDir) await globWalk(walker, host, real, segs, depth + 1, rel, out);
  }
}

/** Resolve one source word to what it selects. Missing non-wildcard sources throw COPY_NO_MATCH. */
export async function selectSource(word: string, opts: SelectOptions): Promise<SelectedSource> {
  const rootfs = opts.rootfs ?? false;
  const follow = opts.followSymlinks ?? true;
  let includeSet: PatternSet | undefined;
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
    includeSet = new PatternSet([pattern]);
    if (!containsWildcards(srcWord) && !containsWildcards(pattern)) {
      required = [cleanWord(srcWord, rootfs), pattern].filter((s) => s !== '').join('/');
    }
  }
  const walker = new Walker(opts, includeSet);
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
      const segs = pattern.split('/').map(globToRegExp);
      const found: string[] = [];
      await globWalk(walker, pre.host, pre.rel, segs, 0, '', found);
      for (const f of found) {
        const name = pre.rel === '' ? f : `${pre.rel}/${f}`;
        const m = await matchFrom(walker, word, name, follow);
        if (m) matches.push(m);
      }
    } else {
      for (const s of pattern.split('/')) globToRegExp(s);
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
