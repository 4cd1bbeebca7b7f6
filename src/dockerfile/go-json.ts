// The exec form (`["a", "b"]`) as BuildKit reads it: Go's json.Unmarshal into []any. Go differs from
// JSON.parse in ways a Dockerfile can show: invalid UTF-8 and lone surrogates decode to U+FFFD, a
// number that overflows float64 is an error (so `[1e999]` is not JSON form), nesting deeper than
// 10000 is an error. Works on byte strings (see bytes.ts); iterative, so deep nesting cannot overflow
// the JS stack.
import { decodeRune, encodeRune, RUNE_ERROR } from './bytes.js';

export type JsonArrayResult =
  /** Valid, every element a string (decoded, as byte strings). */
  | { kind: 'strings'; values: string[] }
  /** Valid JSON array, but some element is not a string. */
  | { kind: 'not-strings' }
  /** Not valid JSON for Go (syntax, overflowing number, too deep). */
  | { kind: 'invalid' };

const MAX_DEPTH = 10000;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** Scans a JSON string starting at the opening quote. Returns [end index after closing quote, decoded] or null. */
function scanString(s: string, start: number, decode: boolean): [number, string] | null {
  let i = start + 1;
  let out = '';
  const n = s.length;
  const u4 = (j: number): number => {
    if (j + 6 > n || s.charCodeAt(j) !== 0x5c || s.charCodeAt(j + 1) !== 0x75) return -1;
    let v = 0;
    for (let k = j + 2; k < j + 6; k++) {
      const h = hexVal(s.charCodeAt(k));
      if (h < 0) return -1;
      v = v * 16 + h;
    }
    return v;
  };
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === 0x22) return [i + 1, out];
    if (c < 0x20) return null;
    if (c === 0x5c) {
      if (i + 1 >= n) return null;
      const e = s.charCodeAt(i + 1);
      switch (e) {
        case 0x22: out += '"'; i += 2; continue;
        case 0x5c: out += '\\'; i += 2; continue;
        case 0x2f: out += '/'; i += 2; continue;
        case 0x62: out += '\b'; i += 2; continue;
        case 0x66: out += '\f'; i += 2; continue;
        case 0x6e: out += '\n'; i += 2; continue;
        case 0x72: out += '\r'; i += 2; continue;
        case 0x74: out += '\t'; i += 2; continue;
        case 0x75: {
          const r = u4(i);
          if (r < 0) return null;
          i += 6;
          if (!decode) continue;
          if (r >= 0xd800 && r <= 0xdfff) {
            // Go pairs a high surrogate with an immediately following low one; anything else is U+FFFD
            // and the following escape is read on its own.
            const r2 = u4(i);
            if (r <= 0xdbff && r2 >= 0xdc00 && r2 <= 0xdfff) {
              out += encodeRune(0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00));
              i += 6;
            } else {
              out += encodeRune(RUNE_ERROR);
            }
            continue;
          }
          out += encodeRune(r);
          continue;
        }
        default:
          return null;
      }
    }
    if (c < 0x80) {
      out += s[i];
      i++;
      continue;
    }
    const [r, w] = decodeRune(s, i);
    // A string may hold any byte >= 0x20; invalid UTF-8 decodes to U+FFFD.
    out += r === RUNE_ERROR && w === 1 ? encodeRune(RUNE_ERROR) : s.slice(i, i + w);
    i += w;
  }
  return null;
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/** `text` must start with `[` (after the caller's trimming); parses it whole, as Go would. */
export function parseJsonStringArray(text: string): JsonArrayResult {
  const n = text.length;
  let i = 0;
  const skipWs = (): void => {
    while (i < n && isWs(text.charCodeAt(i))) i++;
  };
  skipWs();
  if (i >= n || text.charCodeAt(i) !== 0x5b) return { kind: 'invalid' };

  const stack: number[] = []; // 0x5b for arrays, 0x7b for objects
  const values: string[] = [];
  let allStrings = true;
  let overflow = false;
  type State = 'value' | 'key' | 'after';
  let state: State = 'value';

  const open = (c: number): State | null => {
    if (stack.length === 1) allStrings = false;
    stack.push(c);
    if (stack.length > MAX_DEPTH) return null;
    i++;
    skipWs();
    const close = c === 0x5b ? 0x5d : 0x7d;
    if (i < n && text.charCodeAt(i) === close) {
      i++;
      stack.pop();
      return 'after';
    }
    return c === 0x5b ? 'value' : 'key';
  };

  // The top-level array itself.
  stack.push(0x5b);
  i++;
  skipWs();
  if (i < n && text.charCodeAt(i) === 0x5d) {
    i++;
    stack.pop();
    state = 'after';
  }

  while (stack.length > 0) {
    skipWs();
    if (i >= n) return { kind: 'invalid' };
    const c = text.charCodeAt(i);
    if (state === 'value') {
      if (c === 0x22) {
        const top = stack.length === 1;
        const r = scanString(text, i, top);
        if (!r) return { kind: 'invalid' };
        i = r[0];
        if (top) values.push(r[1]);
        state = 'after';
      } else if (c === 0x5b || c === 0x7b) {
        const next = open(c);
        if (!next) return { kind: 'invalid' };
        state = next;
      } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
        NUMBER.lastIndex = i;
        const m = NUMBER.exec(text);
        if (!m || m[0] === '-') return { kind: 'invalid' };
        if (!Number.isFinite(Number(m[0]))) overflow = true;
        i += m[0].length;
        if (stack.length === 1) allStrings = false;
        state = 'after';
      } else {
        const lit = ['true', 'false', 'null'].find((w) => text.startsWith(w, i));
        if (!lit) return { kind: 'invalid' };
        i += lit.length;
        if (stack.length === 1) allStrings = false;
        state = 'after';
      }
    } else if (state === 'key') {
      if (c !== 0x22) return { kind: 'invalid' };
      const r = scanString(text, i, false);
      if (!r) return { kind: 'invalid' };
      i = r[0];
      skipWs();
      if (i >= n || text.charCodeAt(i) !== 0x3a) return { kind: 'invalid' };
      i++;
      state = 'value';
    } else {
      const top = stack[stack.length - 1]!;
      if (c === 0x2c) {
        i++;
        state = top === 0x5b ? 'value' : 'key';
      } else if ((c === 0x5d && top === 0x5b) || (c === 0x7d && top === 0x7b)) {
        i++;
        stack.pop();
      } else {
        return { kind: 'invalid' };
      }
    }
  }
  skipWs();
  if (i !== n) return { kind: 'invalid' };
  if (overflow) return { kind: 'invalid' };
  if (!allStrings) return { kind: 'not-strings' };
  return { kind: 'strings', values };
}
