// Character classes and quoting exactly as Go's `unicode` and `strconv` define them, because BuildKit's
// lexer is written in Go and JavaScript's `\s`, `\w` and JSON quoting differ from Go's.

/** Go's unicode.IsSpace. JavaScript's `\s` adds U+FEFF and lacks U+0085, so it cannot be used. */
export function isGoSpace(ch: string): boolean {
  const c = ch.codePointAt(0);
  if (c === undefined) return false;
  if (c <= 0xff) return (c >= 0x09 && c <= 0x0d) || c === 0x20 || c === 0x85 || c === 0xa0;
  return c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;
}

const LETTER = /^\p{L}$/u;
const DECIMAL_DIGIT = /^\p{Nd}$/u;

/** Go's unicode.IsLetter (general category L). */
export function isGoLetter(ch: string): boolean {
  return LETTER.test(ch);
}

/** Go's unicode.IsDigit (general category Nd, so `٣` counts, `²` does not). */
export function isGoDigit(ch: string): boolean {
  return DECIMAL_DIGIT.test(ch);
}

/** Trims Go's Unicode whitespace from both ends, as strings.TrimSpace does. */
export function goTrimSpace(s: string): string {
  const cps = Array.from(s);
  let start = 0;
  let end = cps.length;
  while (start < end && isGoSpace(cps[start])) start++;
  while (end > start && isGoSpace(cps[end - 1])) end--;
  return cps.slice(start, end).join('');
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

/** Go's `%q` (strconv.Quote), so error messages name the word the way BuildKit prints it. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0xfffd;
    if (ch === '"' || ch === '\\') {
      out += '\\' + ch;
    } else if (c === 0x20 || (PRINTABLE.test(ch) && !(c >= 0xd800 && c <= 0xdfff))) {
      out += ch;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      // A lone surrogate cannot come from UTF-8; Go would have decoded it as U+FFFD.
      out += '\ufffd';
    } else {
      const named: Record<number, string> = { 7: '\\a', 8: '\\b', 12: '\\f', 10: '\\n', 13: '\\r', 9: '\\t', 11: '\\v' };
      if (named[c] !== undefined) out += named[c];
      else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
      else if (c < 0x10000) out += '\\u' + c.toString(16).padStart(4, '0');
      else out += '\\U' + c.toString(16).padStart(8, '0');
    }
  }
  return out + '"';
}
