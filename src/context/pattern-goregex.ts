// moby/patternmatcher turns a .dockerignore pattern into a Go (RE2) regular expression and keeps the
// pattern's `[...]` classes and `\x` escapes as Go regexp syntax. This translates the Go syntax that
// can occur there into an equivalent JavaScript RegExp, so classes like `[[:alpha:]]`, `\d` or a
// reversed range `[z-a]` behave (or fail) as they do in BuildKit.
import { StrataError } from '../errors.js';
import { BadPatternError } from './pattern-gopath.js';

type Range = [number, number];

const MAX_RUNE = 0x10ffff;

const POSIX_CLASSES: Record<string, Range[]> = {
  alnum: [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a]],
  alpha: [[0x41, 0x5a], [0x61, 0x7a]],
  ascii: [[0x00, 0x7f]],
  blank: [[0x09, 0x09], [0x20, 0x20]],
  cntrl: [[0x00, 0x1f], [0x7f, 0x7f]],
  digit: [[0x30, 0x39]],
  graph: [[0x21, 0x7e]],
  lower: [[0x61, 0x7a]],
  print: [[0x20, 0x7e]],
  punct: [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e]],
  space: [[0x09, 0x0d], [0x20, 0x20]],
  upper: [[0x41, 0x5a]],
  word: [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a], [0x5f, 0x5f]],
  xdigit: [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]],
};

// Go's Perl classes are ASCII-only (\s has no \v).
const PERL_CLASSES: Record<string, Range[]> = {
  d: [[0x30, 0x39]],
  s: [[0x09, 0x0a], [0x0c, 0x0d], [0x20, 0x20]],
  w: [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]],
};

const CONTROL_ESCAPES: Record<string, number> = { a: 7, f: 12, t: 9, n: 10, r: 13, v: 11 };

function normalize(ranges: Range[]): Range[] {
  const sorted = ranges.map((r): Range => [r[0], r[1]]).sort((a, b) => a[0] - b[0]);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

function complement(ranges: Range[]): Range[] {
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of normalize(ranges)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_RUNE) out.push([next, MAX_RUNE]);
  return out;
}

function hex(cp: number): string {
  return `\\u{${cp.toString(16)}}`;
}

function classSource(ranges: Range[]): string {
  return '[' + normalize(ranges).map(([lo, hi]) => (lo === hi ? hex(lo) : `${hex(lo)}-${hex(hi)}`)).join('') + ']';
}

function literal(ch: string): string {
  return /^[A-Za-z0-9_]$/.test(ch) ? ch : hex(ch.codePointAt(0) ?? 0);
}

function unsupported(what: string, source: string): StrataError {
  return new StrataError('DOCKERIGNORE_PATTERN', `.dockerignore pattern uses ${what}, which strata does not support (regexp ${source})`, {
    hint: 'write the pattern with *, ?, ** and [...] classes only',
  });
}

/** Compiles the Go regexp source built by the pattern compiler; BadPatternError where Go refuses it. */
export function goRegexToJs(source: string): RegExp {
  const t = Array.from(source);
  let i = 0;
  let out = '';

  // Go's parseEscape for `\` at t[i] (outside or inside a class): one code point, or undefined for
  // escapes that are not single characters (handled by the caller).
  const escapeChar = (): number => {
    const c = t[i + 1];
    if (c === undefined) throw new BadPatternError();
    i += 2;
    const code = c.codePointAt(0) ?? 0;
    if (c >= '1' && c <= '7') {
      // A lone \1..\7 would be a back-reference, which RE2 lacks; with more octal digits it is octal.
      if (!(t[i] >= '0' && t[i] <= '7')) throw new BadPatternError();
    }
    if (c >= '0' && c <= '7') {
      let r = code - 0x30;
      for (let k = 1; k < 3 && t[i] >= '0' && t[i] <= '7'; k++) r = r * 8 + (t[i++].codePointAt(0) ?? 0) - 0x30;
      return r;
    }
    if (c === 'x') {
      if (t[i] === '{') {
        let j = i + 1;
        let digits = '';
        while (j < t.length && /^[0-9A-Fa-f]$/.test(t[j])) digits += t[j++];
        if (t[j] !== '}' || digits === '') throw new BadPatternError();
        const r = parseInt(digits, 16);
        if (r > MAX_RUNE) throw new BadPatternError();
        i = j + 1;
        return r;
      }
      if (!/^[0-9A-Fa-f]$/.test(t[i] ?? '') || !/^[0-9A-Fa-f]$/.test(t[i + 1] ?? '')) throw new BadPatternError();
      const r = parseInt(t[i] + t[i + 1], 16);
      i += 2;
      return r;
    }
    if (CONTROL_ESCAPES[c] !== undefined) return CONTROL_ESCAPES[c];
    if (code < 0x80 && !/^[A-Za-z0-9]$/.test(c)) return code;
    throw new BadPatternError();
  };

  const perlClass = (): Range[] | undefined => {
    const c = t[i + 1];
    if (t[i] !== '\\' || c === undefined) return undefined;
    const base = PERL_CLASSES[c.toLowerCase()];
    if (!base || !/^[dswDSW]$/.test(c)) return undefined;
    i += 2;
    return c === c.toLowerCase() ? base : complement(base);
  };

  const parseClass = (): string => {
    i++; // [
    let negate = false;
    if (t[i] === '^') {
      negate = true;
      i++;
    }
    let ranges: Range[] = [];
    let first = true;
    while (i >= t.length || t[i] !== ']' || first) {
      if (i >= t.length) throw new BadPatternError();
      first = false;
      if (t[i] === '[' && t[i + 1] === ':') {
        const rest = t.slice(i + 2).join('');
        const end = rest.indexOf(':]');
        if (end >= 0) {
          let name = rest.slice(0, end);
          const neg = name.startsWith('^');
          if (neg) name = name.slice(1);
          const group = Object.prototype.hasOwnProperty.call(POSIX_CLASSES, name) ? POSIX_CLASSES[name] : undefined;
          if (!group) throw new BadPatternError();
          ranges = ranges.concat(neg ? complement(group) : group);
          i += 2 + Array.from(rest.slice(0, end)).length + 2;
          continue;
        }
      }
      if (t[i] === '\\' && (t[i + 1] === 'p' || t[i + 1] === 'P')) throw unsupported('a Unicode class (\\p)', source);
      const perl = perlClass();
      if (perl) {
        ranges = ranges.concat(perl);
        continue;
      }
      const lo = classChar();
      let hi = lo;
      if (i + 1 < t.length && t[i] === '-' && t[i + 1] !== ']') {
        i++;
        hi = classChar();
        if (hi < lo) throw new BadPatternError();
      }
      ranges.push([lo, hi]);
    }
    i++; // ]
    return classSource(negate ? complement(ranges) : ranges);
  };

  const classChar = (): number => {
    if (i >= t.length) throw new BadPatternError();
    if (t[i] === '\\') return escapeChar();
    return t[i++].codePointAt(0) ?? 0;
  };

  while (i < t.length) {
    const c = t[i];
    if (c === '[') {
      out += parseClass();
    } else if (c === '\\') {
      const n = t[i + 1];
      if (n === 'p' || n === 'P') throw unsupported('a Unicode class (\\p)', source);
      if (n === 'Q') throw unsupported('a \\Q...\\E literal', source);
      const perl = perlClass();
      if (perl) {
        out += classSource(perl);
      } else if (n === 'b' || n === 'B') {
        out += '\\' + n; // ASCII word boundary, as in Go
        i += 2;
      } else if (n === 'A') {
        out += '^';
        i += 2;
      } else if (n === 'z') {
        out += '$';
        i += 2;
      } else {
        out += hex(escapeChar());
      }
    } else if (c === '.') {
      out += '[^\\n]'; // Go's `.` stops only at LF
      i++;
    } else if (c === '(') {
      if (t[i + 1] === '?') throw unsupported('a (? group', source);
      out += '(?:';
      i++;
    } else if (c === '^' || c === '$' || c === ')' || c === '*' || c === '+' || c === '?' || c === '|') {
      out += c;
      i++;
    } else {
      out += literal(c);
      i++;
    }
  }
  try {
    return new RegExp(out, 'u');
  } catch {
    throw new BadPatternError();
  }
}
