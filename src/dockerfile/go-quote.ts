// Go's strconv.Quote, which BuildKit's dump uses for every flag and argument. Strings here come from
// `fromByteString`: a lone surrogate U+DC80..U+DCFF stands for a raw byte that was not valid UTF-8,
// and Go writes such a byte as `\x` + two hex digits.

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

/** Go's strconv.IsPrint for one code point. */
export function isGoPrint(r: number): boolean {
  if (r === 0x20) return true;
  if (r < 0x20 || r === 0x7f) return false;
  return PRINTABLE.test(String.fromCodePoint(r));
}

export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const r = ch.codePointAt(0)!;
    if (r >= 0xd800 && r <= 0xdfff) {
      // A raw byte (see above); any other lone surrogate cannot be UTF-8 either.
      out += r >= 0xdc80 && r <= 0xdcff ? `\\x${hex(r - 0xdc00, 2)}` : '\ufffd';
      continue;
    }
    if (r === 0x22) out += '\\"';
    else if (r === 0x5c) out += '\\\\';
    else if (isGoPrint(r)) out += ch;
    else if (r === 0x07) out += '\\a';
    else if (r === 0x08) out += '\\b';
    else if (r === 0x0c) out += '\\f';
    else if (r === 0x0a) out += '\\n';
    else if (r === 0x0d) out += '\\r';
    else if (r === 0x09) out += '\\t';
    else if (r === 0x0b) out += '\\v';
    else if (r < 0x20 || r === 0x7f) out += `\\x${hex(r, 2)}`;
    else if (r <= 0xffff) out += `\\u${hex(r, 4)}`;
    else out += `\\U${hex(r, 8)}`;
  }
  return out + '"';
}
