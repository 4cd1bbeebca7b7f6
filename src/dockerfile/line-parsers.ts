// How each keyword turns its arguments text into arguments (BuildKit's line_parsers.go).
// All strings are byte strings (see bytes.ts).
import { decodeRune, encodeRune, fromByteString, isSpaceRune, trimLeftSpace } from './bytes.js';
import { goQuote } from './go-quote.js';
import { parseJsonStringArray } from './go-json.js';
import { splitBlankRuns } from './split-command.js';

/** A problem in one instruction line; the parser adds the file and line. */
export class LineError extends Error {
  constructor(
    message: string,
    readonly code = 'DOCKERFILE_SYNTAX',
  ) {
    super(message);
  }
}

export interface ParsedArgs {
  args: string[];
  json: boolean;
}

export const ERR_NOT_STRING_ARRAY = 'when using JSON array syntax, arrays must be comprised of strings only';

/**
 * The parser's word rule for ENV, LABEL and ARG: whitespace separates words, quotes group (and are
 * kept), the escape character keeps the next character in the word (and is kept too).
 */
export function parseWords(rest: string, escape: number): string[] {
  const enum Phase {
    Spaces,
    Word,
    Quote,
  }
  const words: string[] = [];
  let phase = Phase.Spaces;
  let quote = 0;
  let blankOK = false;
  let ch = 0;
  let chWidth = 0;
  let word = '';
  const n = rest.length;
  for (let pos = 0; pos <= n; pos += chWidth) {
    if (pos !== n) [ch, chWidth] = decodeRune(rest, pos);
    if (phase === Phase.Spaces) {
      if (pos === n) break;
      if (isSpaceRune(ch)) continue;
      phase = Phase.Word;
    }
    if ((phase === Phase.Word || phase === Phase.Quote) && pos === n) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === Phase.Word) {
      if (isSpaceRune(ch)) {
        phase = Phase.Spaces;
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) {
        quote = ch;
        blankOK = true;
        phase = Phase.Quote;
      }
      if (ch === escape) {
        if (pos + chWidth === n) continue;
        word += encodeRune(ch);
        pos += chWidth;
        [ch, chWidth] = decodeRune(rest, pos);
      }
      word += encodeRune(ch);
      continue;
    }
    // Phase.Quote
    if (ch === quote) phase = Phase.Word;
    if (ch === escape && quote !== 0x27) {
      if (pos + chWidth === n) {
        phase = Phase.Word;
        continue;
      }
      pos += chWidth;
      word += encodeRune(ch);
      [ch, chWidth] = decodeRune(rest, pos);
    }
    word += encodeRune(ch);
  }
  return words;
}

/** ENV and LABEL: triples key, value, separator (`""` for the legacy `KEY value` form, `=` otherwise). */
function parseNameVal(rest: string, key: string, escape: number): ParsedArgs {
  const words = parseWords(rest, escape);
  if (words.length === 0) return { args: [], json: false };
  if (!words[0]!.includes('=')) {
    const parts = splitBlankRuns(rest, 2);
    if (parts.length < 2) throw new LineError(`${key} must have two arguments`);
    return { args: [parts[0]!, parts[1]!, ''], json: false };
  }
  const args: string[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq < 0) {
      throw new LineError(`Syntax error - can't find = in ${goQuote(fromByteString(word))}. Must be of the form: name=value`);
    }
    args.push(word.slice(0, eq), word.slice(eq + 1), '=');
  }
  return { args, json: false };
}

function parseJson(rest: string): ParsedArgs | 'not-json' {
  const text = trimLeftSpace(rest);
  if (!text.startsWith('[')) return 'not-json';
  const r = parseJsonStringArray(text);
  if (r.kind === 'invalid') return 'not-json';
  if (r.kind === 'not-strings') throw new LineError(ERR_NOT_STRING_ARRAY);
  return { args: r.values, json: true };
}

function parseMaybeJson(rest: string): ParsedArgs {
  if (rest === '') return { args: [], json: false };
  const j = parseJson(rest);
  if (j !== 'not-json') return j;
  return { args: [rest], json: false };
}

function parseStringsWhitespaceDelimited(rest: string): ParsedArgs {
  if (rest === '') return { args: [], json: false };
  return { args: splitBlankRuns(rest, -1), json: false };
}

function parseMaybeJsonToList(rest: string): ParsedArgs {
  const j = parseJson(rest);
  if (j !== 'not-json') return j;
  return parseStringsWhitespaceDelimited(rest);
}

function parseString(rest: string): ParsedArgs {
  return { args: rest === '' ? [] : [rest], json: false };
}

/** HEALTHCHECK: the type (up to the first whitespace byte), then the rest as for RUN. */
function parseHealthConfig(rest: string): ParsedArgs {
  // BuildKit tests each byte with unicode.IsSpace(rune(byte)), so 0x85 and 0xA0 bytes count.
  let sep = 0;
  while (sep < rest.length && !isSpaceRune(rest.charCodeAt(sep))) sep++;
  let next = sep;
  while (next < rest.length && isSpaceRune(rest.charCodeAt(next))) next++;
  if (sep === 0) return { args: [], json: false };
  const cmd = parseMaybeJson(rest.slice(next));
  return { args: [rest.slice(0, sep), ...cmd.args], json: cmd.json };
}

export type ArgsParser = (rest: string, escape: number) => ParsedArgs;

/** Keyword (lower-cased) to its arguments parser; ONBUILD is handled by the caller. */
export const DISPATCH: Record<string, ArgsParser> = {
  add: parseMaybeJsonToList,
  arg: (rest, escape) => ({ args: parseWords(rest, escape), json: false }),
  cmd: parseMaybeJson,
  copy: parseMaybeJsonToList,
  entrypoint: parseMaybeJson,
  env: (rest, escape) => parseNameVal(rest, 'ENV', escape),
  expose: parseStringsWhitespaceDelimited,
  from: parseStringsWhitespaceDelimited,
  healthcheck: parseHealthConfig,
  label: (rest, escape) => parseNameVal(rest, 'LABEL', escape),
  maintainer: parseString,
  run: parseMaybeJson,
  shell: parseMaybeJson,
  stopsignal: parseString,
  user: parseString,
  volume: parseMaybeJsonToList,
  workdir: parseString,
};
