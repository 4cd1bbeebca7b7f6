// Go treats a Dockerfile as bytes, not as text: its parser reads flags byte by byte, decodes invalid
// UTF-8 to U+FFFD in some places and keeps the raw bytes in others. To reproduce that exactly, the
// parser works on "byte strings": JS strings whose every char code is one byte (0-255).
// At the boundary they become ordinary strings; a byte that is not part of valid UTF-8 becomes a lone
// surrogate U+DC80..U+DCFF (as Python's surrogateescape does), so nothing is lost and the dump can
// print it as Go would (`\x80`).

/** Bytes (or text, encoded as UTF-8) to a byte string. */
export function toByteString(input: string | Uint8Array): string {
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  return buf.toString('latin1');
}

/** The UTF-8 encoding of a string, as a byte string (lone surrogates from `fromByteString` go back to their byte). */
export function encodeUtf8(s: string): string {
  return rawStringToBuffer(s).toString('latin1');
}

export const RUNE_ERROR = 0xfffd;

/** Go's utf8.DecodeRuneInString on a byte string: [rune, width]; invalid input gives [U+FFFD, 1]. */
export function decodeRune(s: string, i: number, n = s.length): [number, number] {
  if (i >= n) return [RUNE_ERROR, 0];
  const b0 = s.charCodeAt(i);
  if (b0 < 0x80) return [b0, 1];
  const cont = (j: number, lo = 0x80, hi = 0xbf): number => {
    if (j >= n) return -1;
    const b = s.charCodeAt(j);
    return b >= lo && b <= hi ? b & 0x3f : -1;
  };
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    const c1 = cont(i + 1);
    return c1 < 0 ? [RUNE_ERROR, 1] : [((b0 & 0x1f) << 6) | c1, 2];
  }
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const lo = b0 === 0xe0 ? 0xa0 : 0x80;
    const hi = b0 === 0xed ? 0x9f : 0xbf;
    const c1 = cont(i + 1, lo, hi);
    if (c1 < 0) return [RUNE_ERROR, 1];
    const c2 = cont(i + 2);
    if (c2 < 0) return [RUNE_ERROR, 1];
    return [((b0 & 0x0f) << 12) | (c1 << 6) | c2, 3];
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const lo = b0 === 0xf0 ? 0x90 : 0x80;
    const hi = b0 === 0xf4 ? 0x8f : 0xbf;
    const c1 = cont(i + 1, lo, hi);
    if (c1 < 0) return [RUNE_ERROR, 1];
    const c2 = cont(i + 2);
    if (c2 < 0) return [RUNE_ERROR, 1];
    const c3 = cont(i + 3);
    if (c3 < 0) return [RUNE_ERROR, 1];
    return [((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3, 4];
  }
  return [RUNE_ERROR, 1];
}

/** Go's utf8.DecodeLastRuneInString on s[0:end]. */
export function decodeLastRune(s: string, end: number): [number, number] {
  if (end <= 0) return [RUNE_ERROR, 0];
  let start = end - 1;
  if (s.charCodeAt(start) < 0x80) return [s.charCodeAt(start), 1];
  const lim = Math.max(0, end - 4);
  for (start--; start >= lim; start--) {
    if ((s.charCodeAt(start) & 0xc0) !== 0x80) break;
  }
  if (start < 0) start = 0;
  const [r, size] = decodeRune(s, start, end);
  if (start + size !== end) return [RUNE_ERROR, 1];
  return [r, size];
}

/** UTF-8 encoding of one code point, as a byte string. */
export function encodeRune(r: number): string {
  if (r < 0 || r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff)) r = RUNE_ERROR;
  if (r < 0x80) return String.fromCharCode(r);
  if (r < 0x800) return String.fromCharCode(0xc0 | (r >> 6), 0x80 | (r & 0x3f));
  if (r < 0x10000) return String.fromCharCode(0xe0 | (r >> 12), 0x80 | ((r >> 6) & 0x3f), 0x80 | (r & 0x3f));
  return String.fromCharCode(0xf0 | (r >> 18), 0x80 | ((r >> 12) & 0x3f), 0x80 | ((r >> 6) & 0x3f), 0x80 | (r & 0x3f));
}

/** Go's unicode.IsSpace. */
export function isSpaceRune(r: number): boolean {
  if (r <= 0xff) {
    return r === 0x09 || r === 0x0a || r === 0x0b || r === 0x0c || r === 0x0d || r === 0x20 || r === 0x85 || r === 0xa0;
  }
  return r === 0x1680 || (r >= 0x2000 && r <= 0x200a) || r === 0x2028 || r === 0x2029 || r === 0x202f || r === 0x205f || r === 0x3000;
}

/** Go's bytes.TrimLeftFunc(s, unicode.IsSpace) on a byte string. */
export function trimLeftSpace(s: string): string {
  let i = 0;
  while (i < s.length) {
    const [r, w] = decodeRune(s, i);
    if (!isSpaceRune(r)) break;
    i += w;
  }
  return i === 0 ? s : s.slice(i);
}

/** Go's TrimRightFunc(s, unicode.IsSpace) on a byte string. */
export function trimRightSpace(s: string): string {
  let end = s.length;
  while (end > 0) {
    const [r, w] = decodeLastRune(s, end);
    if (!isSpaceRune(r)) break;
    end -= w;
  }
  return end === s.length ? s : s.slice(0, end);
}

/** Go's strings.TrimSpace on a byte string. */
export function trimSpace(s: string): string {
  return trimRightSpace(trimLeftSpace(s));
}

/** Go's unicode.ToLower for one code point (simple case mapping). */
export function lowerRune(r: number): number {
  if (r < 0x80) return r >= 0x41 && r <= 0x5a ? r + 32 : r;
  if (r === 0x130) return 0x69; // JS gives "i̇" (full mapping); Go's simple mapping is plain i.
  if (r >= 0xd800 && r <= 0xdfff) return r;
  const l = String.fromCodePoint(r).toLowerCase();
  const c = l.codePointAt(0)!;
  return l.length === String.fromCodePoint(c).length ? c : r;
}

/** Go's unicode.ToUpper for one code point (simple case mapping, as far as JS exposes it). */
export function upperRune(r: number): number {
  if (r < 0x80) return r >= 0x61 && r <= 0x7a ? r - 32 : r;
  if (r >= 0xd800 && r <= 0xdfff) return r;
  const u = String.fromCodePoint(r).toUpperCase();
  const c = u.codePointAt(0)!;
  return u.length === String.fromCodePoint(c).length ? c : r;
}

function mapRunes(s: string, f: (r: number) => number): string {
  // Go's strings.Map: invalid bytes come out as U+FFFD.
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  let out = '';
  if (ascii) {
    for (let i = 0; i < s.length; i++) out += String.fromCharCode(f(s.charCodeAt(i)));
    return out;
  }
  for (let i = 0; i < s.length; ) {
    const [r, w] = decodeRune(s, i);
    out += encodeRune(f(r));
    i += w;
  }
  return out;
}

/** Go's strings.ToLower on a byte string. */
export function goToLower(s: string): string {
  return mapRunes(s, lowerRune);
}

/** Go's strings.ToUpper on a byte string. */
export function goToUpper(s: string): string {
  return mapRunes(s, upperRune);
}

/** Go's strings.EqualFold for the short ASCII words it is used with here (`as`). */
export function equalFold(a: string, b: string): boolean {
  const ra = runes(a);
  const rb = runes(b);
  if (ra.length !== rb.length) return false;
  for (let i = 0; i < ra.length; i++) {
    const x = ra[i]!;
    const y = rb[i]!;
    if (x === y || lowerRune(x) === lowerRune(y) || upperRune(x) === upperRune(y)) continue;
    return false;
  }
  return true;
}

/** Code points of a byte string (invalid bytes as U+FFFD). */
export function runes(s: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.length; ) {
    const [r, w] = decodeRune(s, i);
    out.push(r);
    i += w;
  }
  return out;
}

/**
 * A byte string to an ordinary string. Valid UTF-8 decodes normally; each byte that is not part of a
 * valid sequence becomes U+DC00 + byte (a lone surrogate, which valid UTF-8 can never produce).
 */
export function fromByteString(s: string): string {
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return s;
  let out = '';
  for (let i = 0; i < s.length; ) {
    const b = s.charCodeAt(i);
    if (b < 0x80) {
      out += s[i];
      i++;
      continue;
    }
    const [r, w] = decodeRune(s, i);
    if (r === RUNE_ERROR && w === 1) out += String.fromCharCode(0xdc00 + b);
    else out += String.fromCodePoint(r);
    i += w;
  }
  return out;
}

/** The bytes a string from `fromByteString` stands for (lone surrogates U+DC80..U+DCFF back to raw bytes). */
export function rawStringToBuffer(s: string): Buffer {
  if (!/[\ud800-\udfff]/.test(s)) return Buffer.from(s, 'utf8');
  const parts: Buffer[] = [];
  let run = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        run += s[i]! + s[i + 1]!;
        i++;
        continue;
      }
    }
    if (c >= 0xdc80 && c <= 0xdcff) {
      if (run) parts.push(Buffer.from(run, 'utf8'));
      run = '';
      parts.push(Buffer.from([c - 0xdc00]));
      continue;
    }
    run += s[i];
  }
  if (run) parts.push(Buffer.from(run, 'utf8'));
  return Buffer.concat(parts);
}
