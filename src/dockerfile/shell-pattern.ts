// Glob patterns of `${VAR#p}`, `${VAR%p}`, `${VAR/p/r}`: `*`, `?` and `\`-escapes, no brackets. BuildKit
// turns them into Go regular expressions; this builds the equivalent JavaScript ones and reproduces the
// Go details that show through (`.` stops at LF only, ReplaceAll's empty-match rule, `$0` in replacements).

/** A pattern BuildKit would refuse; the lexer wraps the message as "invalid pattern (...) in substitution". */
export class ShellPatternError extends Error {}

// Go's `.`: everything but LF. JavaScript's `.` also stops at CR, U+2028 and U+2029.
const ANY_CHAR = '[^\\n]';
const REGEX_SPECIALS = new Set(['[', ']', '{', '}', '.', '+', '(', ')', '|', '^', '$']);

/** Compiles a shell pattern; `greedy` picks the longest match for `*`, `anchored` matches at the start only. */
export function compileShellPattern(pattern: string, greedy: boolean, anchored: boolean): RegExp {
  const chars = Array.from(pattern);
  // Go's text/scanner skips a byte-order mark at the very start of its input.
  let i = chars[0] === '\ufeff' ? 1 : 0;
  let out = anchored ? '^' : '';
  const star = greedy ? `${ANY_CHAR}*` : `${ANY_CHAR}*?`;
  for (; i < chars.length; i++) {
    const tok = chars[i];
    if (tok === '*') {
      out += star;
    } else if (tok === '?') {
      out += ANY_CHAR;
    } else if (tok === '\\') {
      const next = chars[i + 1];
      // `\}` and `\/` were only needed to get past the `${...}` syntax; the backslash is not part of the pattern.
      if (next === '}' || next === '/') continue;
      if (next !== '*' && next !== '?' && next !== '\\') {
        throw new ShellPatternError(`invalid escape '\\${next ?? '\ufffd'}'`);
      }
      out += '\\' + next;
      i++;
    } else if (REGEX_SPECIALS.has(tok)) {
      out += '\\' + tok;
    } else {
      out += tok;
    }
  }
  return new RegExp(out, 'u');
}

/** `${v#p}` / `${v##p}`: drop the shortest (longest when greedy) prefix matching the pattern. */
export function trimPatternPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = compileShellPattern(pattern, greedy, true).exec(value);
  return m ? value.slice(m.index + m[0].length) : value;
}

/** `${v%p}` / `${v%%p}`: the suffix case, done as a prefix match on the reversed value and pattern. */
export function trimPatternSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseString(trimPatternPrefix(reversePattern(pattern), reverseString(value), greedy));
}

export function reverseString(s: string): string {
  return Array.from(s).reverse().join('');
}

/** Reverses a pattern but keeps each `\x` escape pair in order (`a\*c` becomes `c\*a`). */
export function reversePattern(pattern: string): string {
  const p = Array.from(pattern);
  const out = new Array<string>(p.length);
  const last = p.length - 1;
  for (let i = 0; i <= last; ) {
    const outIdx = last - i;
    if (p[i] === '\\' && i !== last) {
      out[outIdx - 1] = '\\';
      out[outIdx] = p[i + 1];
      i += 2;
    } else {
      out[outIdx] = p[i];
      i++;
    }
  }
  return out.join('');
}

/** `${v/p/r}`: the first (leftmost, longest) match is replaced by `r` taken literally. */
export function replaceFirst(value: string, pattern: string, replacement: string): string {
  const m = compileShellPattern(pattern, true, false).exec(value);
  if (!m) return value;
  return value.slice(0, m.index) + replacement + value.slice(m.index + m[0].length);
}

/**
 * `${v//p/r}`: Go's Regexp.ReplaceAllString. An empty match right after a previous match is not replaced,
 * and `r` is a Go template: `$0`/`${0}` insert the match, `$$` a dollar, other `$name`s nothing.
 */
export function replaceAll(value: string, pattern: string, replacement: string): string {
  const re = compileShellPattern(pattern, true, false);
  const global = new RegExp(re.source, 'gu');
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  const end = value.length;
  while (searchPos <= end) {
    global.lastIndex = searchPos;
    const m = global.exec(value);
    if (!m) break;
    const a0 = m.index;
    const a1 = a0 + m[0].length;
    out += value.slice(lastMatchEnd, a0);
    if (a1 > lastMatchEnd || a0 === 0) out += expandGoTemplate(replacement, m[0]);
    lastMatchEnd = a1;
    const cp = searchPos < end ? value.codePointAt(searchPos) ?? 0 : -1;
    const width = cp < 0 ? 0 : cp > 0xffff ? 2 : 1;
    if (searchPos + width > a1) searchPos += width;
    else if (searchPos + 1 > a1) searchPos++;
    else searchPos = a1;
  }
  return out + value.slice(lastMatchEnd);
}

const TEMPLATE_NAME_CHAR = /^[\p{L}\p{Nd}_]$/u;

// Go's Regexp.Expand for a regexp without groups: only group 0 (the whole match) exists.
function expandGoTemplate(template: string, match: string): string {
  let out = '';
  let rest = template;
  for (;;) {
    const at = rest.indexOf('$');
    if (at < 0) break;
    out += rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (rest.startsWith('$')) {
      out += '$';
      rest = rest.slice(1);
      continue;
    }
    const ref = extractTemplateRef(rest);
    if (!ref) {
      out += '$';
      continue;
    }
    rest = ref.rest;
    if (ref.num === 0) out += match;
  }
  return out + rest;
}

function extractTemplateRef(s: string): { num: number; rest: string } | undefined {
  const chars = Array.from(s);
  let i = 0;
  const brace = chars[0] === '{';
  if (brace) i++;
  const start = i;
  while (i < chars.length && TEMPLATE_NAME_CHAR.test(chars[i])) i++;
  if (i === start) return undefined;
  const name = chars.slice(start, i).join('');
  if (brace) {
    if (chars[i] !== '}') return undefined;
    i++;
  }
  let num = /^[0-9]+$/.test(name) && name.length <= 8 ? Number(name) : -1;
  if (name.length > 1 && name[0] === '0') num = -1;
  return { num, rest: chars.slice(i).join('') };
}
