// Heredoc markers (`<<EOF`, `<<-'EOF'`, `3<<EOF`) as BuildKit finds them: it cuts the logical line into
// shell words with its shell lexer (quotes and escapes kept, nothing expanded, unset variables left as
// written) and keeps the words of the form [digits]<<[-][ws]NAME. This file reproduces exactly the
// lexer behaviour that detection depends on (empty environment, unset variables kept), including its
// quirks, so that the same lines start heredocs as in BuildKit. Byte strings throughout (bytes.ts).
import { decodeRune, encodeRune, fromByteString, isSpaceRune } from './bytes.js';
import { goQuote } from './go-quote.js';
import { LineError } from './line-parsers.js';

const EOF = -1;
const ESCAPE = 0x5c; // heredoc detection always uses `\`, whatever the escape directive says

interface LexOptions {
  rawQuotes: boolean;
  rawEscapes: boolean;
}

class LexFailure extends Error {}

const IS_DIGIT = /^\p{Nd}$/u;
const IS_LETTER = /^\p{L}$/u;

function isDigit(r: number): boolean {
  if (r < 0x80) return r >= 0x30 && r <= 0x39;
  return r >= 0 && IS_DIGIT.test(String.fromCodePoint(r));
}

function isLetter(r: number): boolean {
  if (r < 0x80) return (r >= 0x41 && r <= 0x5a) || (r >= 0x61 && r <= 0x7a);
  return r >= 0 && r <= 0x10ffff && !(r >= 0xd800 && r <= 0xdfff) && IS_LETTER.test(String.fromCodePoint(r));
}

function runeString(r: number): string {
  // Go's string(rune(-1)) is U+FFFD.
  return encodeRune(r < 0 ? 0xfffd : r);
}

/** The word collector of BuildKit's lexer. Its buffer is shared by nested scans (a BuildKit quirk). */
class Words {
  words: string[] = [];
  inWord = false;
  constructor(private readonly lex: ShellWords) {}
  addChar(ch: number): void {
    if (isSpaceRune(ch) && this.inWord) {
      if (this.lex.buf.length !== 0) {
        this.words.push(this.lex.buf);
        this.lex.buf = '';
        this.inWord = false;
      }
    } else if (!isSpaceRune(ch)) {
      this.addRawChar(ch);
    }
  }
  addRawChar(ch: number): void {
    this.lex.buf += runeString(ch);
    this.inWord = true;
  }
  addString(s: string): void {
    for (let i = 0; i < s.length; ) {
      const [r, w] = decodeRune(s, i);
      this.addChar(r);
      i += w;
    }
  }
  addRawString(s: string): void {
    this.lex.buf += s;
    this.inWord = true;
  }
  getWords(): string[] {
    if (this.lex.buf.length > 0) {
      this.words.push(this.lex.buf);
      this.lex.buf = '';
      this.inWord = false;
    }
    return this.words;
  }
}

class ShellWords {
  private readonly src: number[];
  private pos = 0;
  buf = '';
  private rawEscapes: boolean;

  constructor(
    text: string,
    private readonly opts: LexOptions,
  ) {
    this.src = [];
    for (let i = 0; i < text.length; ) {
      const [r, w] = decodeRune(text, i);
      this.src.push(r);
      i += w;
    }
    // text/scanner skips a byte-order mark at the very start.
    if (this.src[0] === 0xfeff) this.pos = 1;
    this.rawEscapes = opts.rawEscapes;
  }

  private peek(): number {
    return this.pos < this.src.length ? this.src[this.pos]! : EOF;
  }

  private next(): number {
    return this.pos < this.src.length ? this.src[this.pos++]! : EOF;
  }

  words(): string[] {
    return this.processStopOn(EOF, this.rawEscapes)[1];
  }

  private processStopOn(stopChar: number, rawEscapes: boolean): [string, string[]] {
    let result = '';
    this.buf = '';
    const words = new Words(this);
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      while (this.peek() !== EOF) {
        let ch = this.peek();
        if (stopChar !== EOF && ch === stopChar) {
          this.next();
          return [result, words.getWords()];
        }
        const special =
          ch === 0x24 ? () => this.processDollar()
          : ch === 0x3c ? () => this.processPossibleHeredoc()
          : ch === 0x27 ? () => this.processSingleQuote()
          : ch === 0x22 ? () => this.processDoubleQuote()
          : null;
        if (special) {
          const tmp = special();
          result += tmp;
          if (ch === 0x24) words.addString(tmp);
          else words.addRawString(tmp);
          continue;
        }
        ch = this.next();
        if (ch === ESCAPE) {
          if (this.rawEscapes) {
            words.addRawChar(ch);
            result += runeString(ch);
          }
          ch = this.next();
          if (ch === EOF) break;
          words.addRawChar(ch);
        } else {
          words.addChar(ch);
        }
        result += runeString(ch);
      }
      if (stopChar !== EOF) {
        throw new LexFailure(`unexpected end of statement while looking for matching ${runeString(stopChar)}`);
      }
      return [result, words.getWords()];
    } finally {
      // BuildKit restores the negation of the requested mode, which is the saved one whenever it changed.
      if (rawEscapes !== saved) this.rawEscapes = !rawEscapes;
    }
  }

  private processSingleQuote(): string {
    let result = '';
    const open = this.next();
    if (this.opts.rawQuotes) result += runeString(open);
    for (;;) {
      const ch = this.next();
      if (ch === EOF) throw new LexFailure('unexpected end of statement while looking for matching single-quote');
      if (ch === 0x27) {
        if (this.opts.rawQuotes) result += runeString(ch);
        return result;
      }
      result += runeString(ch);
    }
  }

  private processDoubleQuote(): string {
    let result = '';
    const open = this.next();
    if (this.opts.rawQuotes) result += runeString(open);
    for (;;) {
      const p = this.peek();
      if (p === EOF) throw new LexFailure('unexpected end of statement while looking for matching double-quote');
      if (p === 0x22) {
        const ch = this.next();
        if (this.opts.rawQuotes) result += runeString(ch);
        return result;
      }
      if (p === 0x24) {
        result += this.processDollar();
        continue;
      }
      let ch = this.next();
      if (ch === ESCAPE) {
        if (this.rawEscapes) result += runeString(ch);
        const q = this.peek();
        if (q === EOF) continue;
        if (q === 0x22 || q === 0x24 || q === ESCAPE) ch = this.next();
      }
      result += runeString(ch);
    }
  }

  private processName(): string {
    let name = '';
    while (this.peek() !== EOF) {
      let ch = this.peek();
      if (name.length === 0 && isDigit(ch)) {
        while (this.peek() !== EOF && isDigit(this.peek())) {
          ch = this.next();
          name += runeString(ch);
        }
        return name;
      }
      if (name.length === 0 && '@*#?-$!0'.includes(String.fromCharCode(ch))) {
        ch = this.next();
        return runeString(ch);
      }
      if (!isLetter(ch) && !isDigit(ch) && ch !== 0x5f) break;
      ch = this.next();
      name += runeString(ch);
    }
    return name;
  }

  /** With no variable set, every expansion is written back as it was (operands are still scanned). */
  private processDollar(): string {
    this.next();
    if (this.peek() !== 0x7b) {
      const name = this.processName();
      return '$' + name;
    }
    this.next();
    const p = this.peek();
    if (p === EOF) throw new LexFailure("syntax error: missing '}'");
    if (p === 0x7b || p === 0x7d || p === 0x3a) throw new LexFailure('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.next();
    let chs = runeString(ch);
    let nullIsUnset = false;
    if (ch === 0x7d) return '${' + name + '}';
    if (ch === 0x3a) {
      nullIsUnset = true;
      ch = this.next();
      chs += runeString(ch);
    }
    if (nullIsUnset || ch === 0x2b || ch === 0x2d || ch === 0x3f || ch === 0x23 || ch === 0x25) {
      const raw = ch === 0x23 || ch === 0x25;
      if (nullIsUnset && raw) throw new LexFailure(`unsupported modifier (${chs}) in substitution`);
      let word: string;
      try {
        word = this.processStopOn(0x7d, raw)[0];
      } catch (e) {
        if (e instanceof LexFailure && this.peek() === EOF) throw new LexFailure("syntax error: missing '}'");
        throw e;
      }
      return '${' + name + chs + word + '}';
    }
    if (ch === 0x2f) {
      if (this.peek() === 0x2f) this.next();
      let pattern: string;
      try {
        pattern = this.processStopOn(0x2f, true)[0];
      } catch (e) {
        if (e instanceof LexFailure && this.peek() === EOF) throw new LexFailure("syntax error: missing '/' in ${}");
        throw e;
      }
      let replacement: string;
      try {
        replacement = this.processStopOn(0x7d, true)[0];
      } catch (e) {
        if (e instanceof LexFailure && this.peek() === EOF) throw new LexFailure("syntax error: missing '}'");
        throw e;
      }
      return '${' + name + '/' + pattern + '/' + replacement + '}';
    }
    throw new LexFailure(`unsupported modifier (${chs}) in substitution`);
  }

  private processPossibleHeredoc(): string {
    this.next();
    if (this.peek() !== 0x3c) return '<';
    this.next();
    let space = '';
    for (let c = this.peek(); c === 0x09 || c === 0x0d || c === 0x20; c = this.peek()) {
      space += runeString(c);
      this.next();
    }
    return '<<' + space;
  }
}

function shellWords(text: string, opts: LexOptions): string[] {
  return new ShellWords(text, opts).words();
}

export interface HeredocMarker {
  /** Terminator after quote and escape removal (byte string). */
  name: string;
  fileDescriptor: number;
  expand: boolean;
  chomp: boolean;
}

const HEREDOC_WORD = /^([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)$/;

function countQuotes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x27 || c === 0x22) n++;
  }
  return n;
}

/** BuildKit's ParseHeredoc: null when `word` is not a heredoc marker; throws LineError on lexing errors. */
export function parseHeredocWord(word: string): HeredocMarker | null {
  const m = HEREDOC_WORD.exec(word);
  if (!m) return null;
  const rest = m[3]!;
  if (rest.length === 0) return null;
  // Go's strconv.ParseUint with the error ignored: empty gives 0, overflow gives the maximum.
  const fd = m[1] === '' ? 0 : Math.min(Number(m[1]), 18446744073709551615);
  const lex = (rawQuotes: boolean): string[] => {
    try {
      return shellWords(rest, { rawQuotes, rawEscapes: false });
    } catch (e) {
      if (e instanceof LexFailure) {
        throw new LineError(`failed to process ${goQuote(fromByteString(rest))}: ${fromByteString(e.message)}`);
      }
      throw e;
    }
  };
  const words = lex(false);
  if (words.length !== 1) return null;
  const wordsRaw = lex(true);
  if (wordsRaw.length !== words.length) {
    throw new LineError(`internal lexing of heredoc produced inconsistent results: ${fromByteString(rest)}`);
  }
  return {
    name: words[0]!,
    fileDescriptor: fd,
    expand: countQuotes(words[0]!) === countQuotes(wordsRaw[0]!),
    chomp: m[2] === '-',
  };
}

/** The heredoc markers of a logical line, in order. */
export function heredocsFromLine(line: string): HeredocMarker[] {
  let words: string[];
  try {
    words = shellWords(line, { rawQuotes: true, rawEscapes: true });
  } catch (e) {
    // BuildKit ignores the error and gets no words, hence no heredocs.
    if (e instanceof LexFailure) return [];
    throw e;
  }
  const out: HeredocMarker[] = [];
  for (const w of words) {
    const h = parseHeredocWord(w);
    if (h) out.push(h);
  }
  return out;
}

/** Removes leading tabs from every line of a heredoc body (`<<-`). */
export function chompHeredocContent(s: string): string {
  // Only LF starts a line here (a JS multiline `^` would also match after CR).
  return s
    .split('\n')
    .map((l) => l.replace(/^\t+/, ''))
    .join('\n');
}
