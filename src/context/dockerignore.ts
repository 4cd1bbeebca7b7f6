// .dockerignore: reading the file (moby/patternmatcher/ignorefile) and matching context paths against
// its patterns (moby/patternmatcher), plus the directory-skipping rule BuildKit's context transfer
// (tonistiigi/fsutil) applies while walking.
//
// In a build, `Dockerfile` and `.dockerignore` are ordinary paths here: a pattern that matches them
// keeps them out of the context like any other file. BuildKit still reads the Dockerfile through its
// own channel, so ignoring it does not break the build; the caller must do the same.
import { StrataError } from '../errors.js';
import { BadPatternError, goCleanPath, goDirPath, goPathMatch, goTrimSpace } from './pattern-gopath.js';
import { goRegexToJs } from './pattern-goregex.js';

// bufio.Scanner's default token limit: a longer line makes BuildKit fail to read the file.
const MAX_LINE_BYTES = 64 * 1024;

/**
 * Reads .dockerignore text as BuildKit does: a BOM is dropped, lines starting with `#` are comments
 * (only at column 0), lines are trimmed of Unicode whitespace, blank lines are skipped, each pattern is
 * cleaned (`./a//b/` -> `a/b`) and loses a leading `/`; `!` exceptions keep their `!` (trimmed after it).
 */
export function parseDockerignore(text: string): string[] {
  const patterns: string[] = [];
  const body = text.startsWith('\ufeff') ? text.slice(1) : text;
  const lines = body.split('\n');
  const endsWithNewline = lines.length > 1 && lines[lines.length - 1] === '';
  if (endsWithNewline) lines.pop();
  lines.forEach((rawLine, index) => {
    const terminated = index < lines.length - 1 || endsWithNewline;
    const bytes = Buffer.byteLength(rawLine, 'utf8') + (terminated ? 1 : 0);
    if (terminated ? bytes > MAX_LINE_BYTES : bytes >= MAX_LINE_BYTES) {
      throw new StrataError('DOCKERIGNORE_PARSE', `failed to parse dockerignore: line ${index + 1} is longer than ${MAX_LINE_BYTES - 1} bytes`, {
        hint: 'split or shorten the pattern; BuildKit refuses such a file too',
      });
    }
    let line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (line.startsWith('#')) return;
    line = goTrimSpace(line);
    if (line === '') return;
    const invert = line.startsWith('!');
    if (invert) line = goTrimSpace(line.slice(1));
    if (line.length > 0) {
      line = goCleanPath(line);
      if (line.length > 1 && line.startsWith('/')) line = line.slice(1);
    }
    patterns.push(invert ? '!' + line : line);
  });
  return patterns;
}

type MatchType = 'exact' | 'prefix' | 'suffix' | 'regexp';

// Characters that make an exception pattern more than a plain path prefix (fsutil's list on Unix).
const GLOB_CHARS = /[*[\]?^\\]/;

class Pattern {
  readonly exclusion: boolean;
  /** The cleaned pattern without its `!`. */
  readonly cleaned: string;
  private compiled?: { type: MatchType; regexp?: RegExp } | { error: StrataError };

  constructor(cleaned: string, exclusion: boolean) {
    this.cleaned = cleaned;
    this.exclusion = exclusion;
  }

  match(path: string): boolean {
    this.compiled ??= this.compile();
    if ('error' in this.compiled) throw this.compiled.error;
    const { type, regexp } = this.compiled;
    const p = this.cleaned;
    switch (type) {
      case 'exact':
        return path === p;
      case 'prefix':
        return path.startsWith(p.slice(0, -2));
      case 'suffix': {
        const suffix = p.slice(2);
        if (path.endsWith(suffix)) return true;
        // `**/foo` also matches `foo` itself.
        return suffix.startsWith('/') && path === suffix.slice(1);
      }
      case 'regexp':
        return (regexp as RegExp).test(path);
    }
  }

  /** Without a trailing `/**` or `/*`: the literal directory an exception is about. */
  withoutTrailingGlob(): string {
    let s = this.cleaned;
    if (s.endsWith('/**')) s = s.slice(0, -3);
    if (s.endsWith('/*')) s = s.slice(0, -2);
    return s;
  }

  // patternmatcher's compile: classify the pattern and build the Go regexp for the general case.
  private compile(): { type: MatchType; regexp?: RegExp } | { error: StrataError } {
    const chars = Array.from(this.cleaned);
    let re = '^';
    let type: MatchType = 'exact';
    let pos = chars[0] === '\ufeff' ? 1 : 0; // text/scanner skips a leading BOM
    for (let iteration = 0; pos < chars.length; iteration++) {
      const ch = chars[pos++];
      if (ch === '*') {
        if (chars[pos] === '*') {
          pos++;
          if (chars[pos] === '/') pos++; // `**/` is `**`
          if (pos >= chars.length) {
            // A trailing `**` accepts everything below, as in .gitignore.
            if (type === 'exact') type = 'prefix';
            else {
              re += '.*';
              type = 'regexp';
            }
          } else {
            re += '(.*/)?';
            type = 'regexp';
          }
          if (iteration === 0) type = 'suffix';
        } else {
          re += '[^/]*';
          type = 'regexp';
        }
      } else if (ch === '?') {
        re += '[^/]';
        type = 'regexp';
      } else if ('.+()|{}$'.includes(ch)) {
        re += '\\' + ch;
      } else if (ch === '\\') {
        if (pos < chars.length) {
          re += '\\' + chars[pos++];
          type = 'regexp';
        } else {
          re += '\\';
        }
      } else if (ch === '[' || ch === ']') {
        re += ch;
        type = 'regexp';
      } else {
        re += ch;
      }
    }
    if (type !== 'regexp') return { type };
    try {
      return { type, regexp: goRegexToJs(re + '$') };
    } catch (e) {
      if (e instanceof BadPatternError) return { error: badPattern(this.cleaned) };
      if (e instanceof StrataError) return { error: e };
      throw e;
    }
  }
}

function badPattern(pattern: string): StrataError {
  return new StrataError('DOCKERIGNORE_PATTERN', `invalid .dockerignore pattern ${JSON.stringify(pattern)}: syntax error in pattern`, {
    hint: 'check the [...] classes and \\ escapes; a literal [ must be written \\[',
  });
}

/** Per-pattern results for a directory, handed to its children by matchWithParent during a walk. */
export type MatchInfo = readonly boolean[];

/**
 * The patterns of a .dockerignore, in order; a later pattern overrides earlier ones for a path, and
 * `!pattern` re-includes. Paths are relative to the context root, `/`-separated, already clean
 * (`a/b`, never `./a` or `/a`). A pattern that matches a directory also matches everything below it.
 *
 * Malformed patterns: those filepath.Match rejects fail in the constructor; a class Go's regexp
 * rejects (such as `[z-a]`) fails when a path is first checked against it, as in BuildKit.
 */
export class PatternMatcher {
  /** True when at least one `!` exception exists. */
  readonly exclusions: boolean;
  private readonly list: Pattern[] = [];
  private readonly onlyPrefixExceptions: boolean;

  constructor(patterns: readonly string[]) {
    let exclusions = false;
    for (const raw of patterns) {
      let p = goTrimSpace(raw);
      if (p === '') continue;
      p = goCleanPath(p);
      let exclusion = false;
      if (p.startsWith('!')) {
        if (p.length === 1) {
          throw new StrataError('DOCKERIGNORE_PATTERN', 'illegal exclusion pattern: "!"', {
            hint: 'write the path to re-include after the !, e.g. !docs/README.md',
          });
        }
        exclusion = true;
        exclusions = true;
        p = p.slice(1);
      }
      try {
        goPathMatch(p, '.');
      } catch (e) {
        if (e instanceof BadPatternError) throw badPattern(p);
        throw e;
      }
      this.list.push(new Pattern(p, exclusion));
    }
    this.exclusions = exclusions;
    this.onlyPrefixExceptions = this.list.every((p) => !p.exclusion || !GLOB_CHARS.test(p.withoutTrailingGlob()));
  }

  /** The cleaned patterns, `!` kept on exceptions. */
  get patterns(): string[] {
    return this.list.map((p) => (p.exclusion ? '!' + p.cleaned : p.cleaned));
  }

  /** Whether the path is ignored: MatchesOrParentMatches, i.e. a pattern also applies to all its parents. */
  matches(relPath: string): boolean {
    let matched = false;
    const parent = goDirPath(relPath);
    const parentDirs = parent.split('/');
    for (const pattern of this.list) {
      // An inclusion cannot change an already-ignored path, nor an exception a kept one.
      if (pattern.exclusion !== matched) continue;
      let match = pattern.match(relPath);
      if (!match && parent !== '.') {
        for (let i = 0; i < parentDirs.length && !match; i++) match = pattern.match(parentDirs.slice(0, i + 1).join('/'));
      }
      if (match) matched = !pattern.exclusion;
    }
    return matched;
  }

  /**
   * The walk-time form (MatchesUsingParentResults): pass the MatchInfo returned for the parent
   * directory (or nothing at the top level, which falls back to checking every parent).
   */
  matchWithParent(relPath: string, parentInfo?: MatchInfo): { matched: boolean; info: MatchInfo } {
    const fromParent = parentInfo && parentInfo.length > 0 ? parentInfo : undefined;
    if (fromParent && fromParent.length !== this.list.length) {
      throw new Error('matchWithParent: parent MatchInfo belongs to another PatternMatcher');
    }
    let matched = false;
    const info = new Array<boolean>(this.list.length).fill(false);
    this.list.forEach((pattern, i) => {
      let match = fromParent ? fromParent[i] : false;
      if (!match) {
        if (pattern.exclusion !== matched) return;
        match = pattern.match(relPath);
        if (!match && !fromParent) {
          const parent = goDirPath(relPath);
          if (parent !== '.') {
            const dirs = parent.split('/');
            for (let k = 0; k < dirs.length && !match; k++) match = pattern.match(dirs.slice(0, k + 1).join('/'));
          }
        }
      }
      info[i] = match;
      if (match) matched = !pattern.exclusion;
    });
    return { matched, info };
  }

  /**
   * Whether an exception could re-include something below `relDir` (fsutil's test): any exception
   * with wildcards might, otherwise only one whose literal path lies under `relDir/`.
   */
  mayReinclude(relDir: string): boolean {
    if (!this.exclusions) return false;
    if (!this.onlyPrefixExceptions) return true;
    const dirSlash = relDir + '/';
    return this.list.some((p) => p.exclusion && (p.withoutTrailingGlob() + '/').startsWith(dirSlash));
  }

  /** True when `relDir` is ignored and nothing below it can come back: a walk may skip it entirely. */
  isExcludedDir(relDir: string, matched: boolean = this.matches(relDir)): boolean {
    return matched && !this.mayReinclude(relDir);
  }
}
