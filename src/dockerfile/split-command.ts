// Splitting a logical line into keyword, flags and the rest, as BuildKit's split_command.go does.
// All strings are byte strings (see bytes.ts).
import { isSpaceRune, trimSpace } from './bytes.js';

const BLANK_RUN = /[\t\v\f\r ]+/g;

/**
 * Go's regexp.Split(s, n) with BuildKit's blank-run pattern (TAB VT FF CR SPACE; not NBSP), including
 * Go's handling of a run at either end. n < 0 means no limit.
 */
export function splitBlankRuns(s: string, n: number): string[] {
  if (n === 0) return [];
  if (s.length === 0) return [''];
  const out: string[] = [];
  let beg = 0;
  let end = 0;
  BLANK_RUN.lastIndex = 0;
  for (let m = BLANK_RUN.exec(s); m; m = BLANK_RUN.exec(s)) {
    if (n > 0 && out.length === n - 1) break;
    end = m.index;
    const mEnd = m.index + m[0].length;
    if (mEnd !== 0) out.push(s.slice(beg, end));
    beg = mEnd;
  }
  if (end !== s.length) out.push(s.slice(beg));
  return out;
}

export interface SplitCommand {
  cmd: string;
  flags: string[];
  rest: string;
}

/** Keyword, flags and the arguments text of a logical line. */
export function splitCommand(line: string, escape: number): SplitCommand {
  const cmdline = splitBlankRuns(trimSpace(line), 2);
  let rest = '';
  let flags: string[] = [];
  if (cmdline.length === 2) {
    [rest, flags] = extractBuilderFlags(cmdline[1]!, escape);
  }
  return { cmd: cmdline[0]!, flags, rest: trimSpace(rest) };
}

/**
 * Reads `--flag` words from the start of `line`. BuildKit scans this byte by byte: a byte 0x85 or 0xA0
 * counts as whitespace even inside a UTF-8 character, and each byte of a multi-byte character is
 * written to the flag as if it were a Latin-1 character (re-encoded as UTF-8).
 */
export function extractBuilderFlags(line: string, escape: number): [string, string[]] {
  const words: string[] = [];
  const enum Phase {
    Spaces,
    Word,
    Quote,
  }
  let phase = Phase.Spaces;
  let word = '';
  let quote = 0;
  let blankOK = false;
  let ch = 0;
  const n = line.length;
  const put = (c: number): void => {
    // strings.Builder.WriteRune(rune(byte)): bytes >= 0x80 become two-byte UTF-8 sequences.
    word += c < 0x80 ? String.fromCharCode(c) : String.fromCharCode(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
  };
  for (let pos = 0; pos <= n; pos++) {
    if (pos !== n) ch = line.charCodeAt(pos);
    if (phase === Phase.Spaces) {
      if (pos === n) break;
      if (isSpaceRune(ch)) continue;
      if (ch !== 0x2d || pos + 1 === n || line.charCodeAt(pos + 1) !== 0x2d) {
        return [line.slice(pos), words];
      }
      phase = Phase.Word;
    }
    if ((phase === Phase.Word || phase === Phase.Quote) && pos === n) {
      if (word !== '--' && (blankOK || word.length > 0)) words.push(word);
      break;
    }
    if (phase === Phase.Word) {
      if (isSpaceRune(ch)) {
        phase = Phase.Spaces;
        if (word === '--') return [line.slice(pos), words];
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) {
        quote = ch;
        blankOK = true;
        phase = Phase.Quote;
        continue;
      }
      if (ch === escape) {
        if (pos + 1 === n) continue;
        pos++;
        ch = line.charCodeAt(pos);
      }
      put(ch);
      continue;
    }
    // Phase.Quote
    if (ch === quote) {
      phase = Phase.Word;
      continue;
    }
    if (ch === escape) {
      if (pos + 1 === n) {
        phase = Phase.Word;
        continue;
      }
      pos++;
      ch = line.charCodeAt(pos);
    }
    put(ch);
  }
  return ['', words];
}
