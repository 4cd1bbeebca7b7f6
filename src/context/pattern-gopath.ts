// Go's path/filepath functions that .dockerignore handling relies on (Unix flavour): Clean, Dir and
// Match, and strings.TrimSpace. Match is kept because moby/patternmatcher uses it to decide which patterns are malformed.

// Go's unicode.IsSpace; JavaScript's \s is a different set (it has U+FEFF, lacks U+0085).
function isGoSpace(ch: string): boolean {
  const c = ch.codePointAt(0) ?? -1;
  if (c <= 0xff) return (c >= 0x09 && c <= 0x0d) || c === 0x20 || c === 0x85 || c === 0xa0;
  return c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;
}

/** strings.TrimSpace. */
export function goTrimSpace(s: string): string {
  const cps = Array.from(s);
  let start = 0;
  let end = cps.length;
  while (start < end && isGoSpace(cps[start])) start++;
  while (end > start && isGoSpace(cps[end - 1])) end--;
  return cps.slice(start, end).join('');
}

/** filepath.Clean: collapse `//`, drop `.` elements, resolve `..` lexically, no trailing slash. */
export function goCleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  if (rooted) return '/' + joined;
  return joined === '' ? '.' : joined;
}

/** filepath.Dir: everything before the last `/`, cleaned; `.` when there is no `/`. */
export function goDirPath(p: string): string {
  const i = p.lastIndexOf('/');
  return goCleanPath(p.slice(0, i + 1));
}

/** filepath.ErrBadPattern. */
export class BadPatternError extends Error {
  constructor() {
    super('syntax error in pattern');
  }
}

/**
 * filepath.Match(pattern, name) on Unix: `*`, `?`, `[...]` classes (`^` negates), `\` escapes.
 * Throws BadPatternError for a malformed pattern (checked even where the match already failed).
 */
export function goPathMatch(pattern: string, name: string): boolean {
  let pat = Array.from(pattern);
  let rest = Array.from(name);
  patternLoop: while (pat.length > 0) {
    const { star, chunk, remainder } = scanChunk(pat);
    pat = remainder;
    if (star && chunk.length === 0) return !rest.includes('/');
    const first = matchChunk(chunk, rest);
    if (first !== undefined && (first.length === 0 || pat.length > 0)) {
      rest = first;
      continue;
    }
    if (star) {
      for (let i = 0; i < rest.length && rest[i] !== '/'; i++) {
        const t = matchChunk(chunk, rest.slice(i + 1));
        if (t !== undefined) {
          if (pat.length === 0 && t.length > 0) continue;
          rest = t;
          continue patternLoop;
        }
      }
    }
    // Before answering "no", make sure the rest of the pattern is well formed.
    while (pat.length > 0) {
      const next = scanChunk(pat);
      pat = next.remainder;
      matchChunk(next.chunk, []);
    }
    return false;
  }
  return rest.length === 0;
}

function scanChunk(pattern: string[]): { star: boolean; chunk: string[]; remainder: string[] } {
  let start = 0;
  let star = false;
  while (start < pattern.length && pattern[start] === '*') {
    start++;
    star = true;
  }
  const p = pattern.slice(start);
  let inRange = false;
  let i = 0;
  scan: for (; i < p.length; i++) {
    switch (p[i]) {
      case '\\':
        if (i + 1 < p.length) i++;
        break;
      case '[':
        inRange = true;
        break;
      case ']':
        inRange = false;
        break;
      case '*':
        if (!inRange) break scan;
        break;
    }
  }
  return { star, chunk: p.slice(0, i), remainder: p.slice(i) };
}

// Returns the unmatched rest of `s`, or undefined when the chunk does not match. Keeps parsing the
// chunk after a mismatch so that syntax errors are always found.
function matchChunk(chunkIn: string[], sIn: string[]): string[] | undefined {
  let chunk = chunkIn;
  let s = sIn;
  let failed = false;
  while (chunk.length > 0) {
    if (!failed && s.length === 0) failed = true;
    const c = chunk[0];
    if (c === '[') {
      let r = -1;
      if (!failed) {
        r = s[0].codePointAt(0) ?? -1;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
      let negated = false;
      if (chunk.length > 0 && chunk[0] === '^') {
        negated = true;
        chunk = chunk.slice(1);
      }
      let match = false;
      let nrange = 0;
      for (;;) {
        if (chunk.length > 0 && chunk[0] === ']' && nrange > 0) {
          chunk = chunk.slice(1);
          break;
        }
        const lo = getEsc(chunk);
        chunk = lo.rest;
        let hi = lo.r;
        if (chunk[0] === '-') {
          const h = getEsc(chunk.slice(1));
          chunk = h.rest;
          hi = h.r;
        }
        if (lo.r <= r && r <= hi) match = true;
        nrange++;
      }
      if (match === negated) failed = true;
    } else if (c === '?') {
      if (!failed) {
        if (s[0] === '/') failed = true;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
    } else {
      if (c === '\\') {
        chunk = chunk.slice(1);
        if (chunk.length === 0) throw new BadPatternError();
      }
      if (!failed) {
        if (chunk[0] !== s[0]) failed = true;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
    }
  }
  return failed ? undefined : s;
}

function getEsc(chunkIn: string[]): { r: number; rest: string[] } {
  let chunk = chunkIn;
  if (chunk.length === 0 || chunk[0] === '-' || chunk[0] === ']') throw new BadPatternError();
  if (chunk[0] === '\\') {
    chunk = chunk.slice(1);
    if (chunk.length === 0) throw new BadPatternError();
  }
  const r = chunk[0].codePointAt(0) ?? -1;
  const rest = chunk.slice(1);
  if (rest.length === 0) throw new BadPatternError();
  return { r, rest };
}
