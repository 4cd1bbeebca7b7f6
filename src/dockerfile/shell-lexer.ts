// Shell-word expansion as BuildKit's frontend/dockerfile/shell lexer does it: quotes, escapes, `$VAR`,
// `${VAR...}` operators and word splitting, including its quirks (see FORMAT.md section 7). The scan is
// one pass over code points, with the same recursion points as BuildKit so that errors and edge cases
// come out the same.
import { StrataError } from '../errors.js';
import { goQuote, isGoDigit, isGoLetter, isGoSpace } from './shell-chars.js';
import { ShellPatternError, replaceAll, replaceFirst, trimPatternPrefix, trimPatternSuffix } from './shell-pattern.js';

/**
 * Where variable values come from: a Map (names are case-sensitive, as on Linux) or a function that
 * returns undefined for an unset name. A name set to '' is set (it matters for `${v-x}` vs `${v:-x}`).
 */
export type EnvLookup = ReadonlyMap<string, string> | ((name: string) => string | undefined);

export type EscapeToken = '\\' | '`';

export interface ShellLexerOptions {
  /** Leave `$NAME`/`${NAME...}` as written when NAME is unset (BuildKit's SkipUnsetEnv). */
  skipUnsetEnv?: boolean;
  /** Keep quote characters in the output (BuildKit's RawQuotes). */
  keepQuotes?: boolean;
  /** Keep escape characters in the output (BuildKit's RawEscapes). */
  keepEscapes?: boolean;
  /** Treat quotes as ordinary characters (BuildKit's SkipProcessQuotes). */
  skipProcessQuotes?: boolean;
}

export interface WordResult {
  result: string;
  /** Every variable name the expansion looked up, set or not. */
  used: Set<string>;
  /** The looked-up names that were unset (a subset of `used`); BuildKit's "unmatched". */
  unmatched: Set<string>;
}

export interface WordsResult {
  words: string[];
  used: Set<string>;
  unmatched: Set<string>;
}

/** Turns `K=V` strings into an EnvLookup the way BuildKit's EnvsFromSlice does: later K wins, no `=` sets ''. */
export function envFromList(list: readonly string[]): Map<string, string> {
  const env = new Map<string, string>();
  for (const entry of list) {
    const eq = entry.indexOf('=');
    if (eq < 0) env.set(entry, '');
    else env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/** Expands one word (no splitting) and returns just the text; throws StrataError like processWord. */
export function expandWithEnv(word: string, env: EnvLookup, escapeToken: EscapeToken = '\\', options: ShellLexerOptions = {}): string {
  return new ShellLexer(escapeToken, options).processWord(word, env).result;
}

export class ShellLexer {
  readonly escapeToken: EscapeToken;
  readonly options: Readonly<ShellLexerOptions>;

  constructor(escapeToken: EscapeToken = '\\', options: ShellLexerOptions = {}) {
    if (escapeToken !== '\\' && escapeToken !== '`') {
      throw new StrataError('SHELL_ESCAPE', `invalid escape token ${JSON.stringify(escapeToken)}`, {
        hint: 'the escape character must be \\ or a backtick (`)',
      });
    }
    this.escapeToken = escapeToken;
    this.options = { ...options };
  }

  /** Expands `word` as one word (ENV/LABEL values, WORKDIR, ...): nothing is split. */
  processWord(word: string, env: EnvLookup): WordResult {
    const run = new WordScan(this, word, env);
    const { text } = run.process(word);
    return { result: text, used: run.used, unmatched: run.unmatched };
  }

  /** Expands `word` and splits the result into words at unquoted whitespace (e.g. VOLUME, EXPOSE). */
  processWords(word: string, env: EnvLookup): WordsResult {
    const run = new WordScan(this, word, env);
    const { words } = run.process(word);
    return { words, used: run.used, unmatched: run.unmatched };
  }
}

/** Internal failure; WordScan.process turns it into a StrataError naming the whole word. */
class LexError extends Error {}

type Ch = string | null; // null is the end of input

class Scanner {
  private readonly chars: string[];
  private pos = 0;

  constructor(text: string) {
    this.chars = Array.from(text);
    // Go's text/scanner drops a byte-order mark at the start of its input.
    if (this.chars[0] === '\ufeff') this.pos = 1;
  }

  peek(): Ch {
    return this.pos < this.chars.length ? this.chars[this.pos] : null;
  }

  next(): Ch {
    const ch = this.peek();
    if (ch !== null) this.pos++;
    return ch;
  }
}

/**
 * The buffer of the word being built. BuildKit keeps ONE such buffer per lexer and every nested scan
 * (the operand of `${v:-x}`, `${v#p}`, `${v/p/r}`) empties it when it starts and when it ends. So in
 * word-splitting mode the text gathered before such an operator is lost: `a${X:-b}` gives `["b"]` and
 * `pre${X:+y}` with X unset gives `[]`. The real-world data confirms it, so it is reproduced on purpose.
 */
interface SharedBuffer {
  text: string;
}

class WordCollector {
  private readonly words: string[] = [];
  private inWord = false;

  constructor(private readonly buf: SharedBuffer) {}

  addChar(ch: string): void {
    if (isGoSpace(ch)) {
      if (this.inWord && this.buf.text.length !== 0) {
        this.words.push(this.buf.text);
        this.buf.text = '';
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }

  addRawChar(ch: string): void {
    this.buf.text += ch;
    this.inWord = true;
  }

  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }

  addRawString(s: string): void {
    this.buf.text += s;
    this.inWord = true;
  }

  finish(): string[] {
    if (this.buf.text.length > 0) {
      this.words.push(this.buf.text);
      this.buf.text = '';
      this.inWord = false;
    }
    return this.words;
  }
}

const SPECIAL_PARAMS = new Set(['@', '*', '#', '?', '-', '$', '!', '0']);

class WordScan {
  readonly used = new Set<string>();
  readonly unmatched = new Set<string>();
  private readonly scanner: Scanner;
  private readonly escape: string;
  private readonly opts: Readonly<ShellLexerOptions>;
  private readonly lookup: (name: string) => string | undefined;
  private readonly shared: SharedBuffer = { text: '' };
  private rawEscapes: boolean;

  constructor(lexer: ShellLexer, word: string, env: EnvLookup) {
    this.scanner = new Scanner(word);
    this.escape = lexer.escapeToken;
    this.opts = lexer.options;
    this.rawEscapes = lexer.options.keepEscapes === true;
    this.lookup = typeof env === 'function' ? env : (name) => env.get(name);
  }

  process(source: string): { text: string; words: string[] } {
    try {
      return this.processStopOn(null, this.rawEscapes);
    } catch (e) {
      if (e instanceof LexError) {
        throw new StrataError('SHELL_EXPAND', `failed to process ${goQuote(source)}: ${e.message}`, {
          hint: hintFor(e.message),
          cause: e,
        });
      }
      throw e;
    }
  }

  private getEnv(name: string): string | undefined {
    const value = this.lookup(name);
    this.used.add(name);
    if (value === undefined) this.unmatched.add(name);
    return value;
  }

  // Scans up to `stop` (consumed) or the end of input when stop is null.
  private processStopOn(stop: Ch, rawEscapes: boolean): { text: string; words: string[] } {
    const sc = this.scanner;
    let result = '';
    this.shared.text = '';
    const words = new WordCollector(this.shared);
    const savedRaw = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      for (let ch = sc.peek(); ch !== null; ch = sc.peek()) {
        if (stop !== null && ch === stop) {
          sc.next();
          return { text: result, words: words.finish() };
        }
        const quotes = this.opts.skipProcessQuotes !== true;
        if (ch === '$' || ch === '<' || (quotes && (ch === "'" || ch === '"'))) {
          const piece =
            ch === '$'
              ? this.processDollar()
              : ch === '<'
                ? this.processPossibleHeredoc()
                : ch === "'"
                  ? this.processSingleQuote()
                  : this.processDoubleQuote();
          result += piece;
          if (ch === '$') words.addString(piece);
          else words.addRawString(piece);
          continue;
        }
        sc.next();
        let c: string = ch;
        if (c === this.escape) {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          const escaped = sc.next();
          // An escape at the very end is dropped.
          if (escaped === null) break;
          c = escaped;
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stop !== null) throw new LexError(`unexpected end of statement while looking for matching ${stop}`);
      return { text: result, words: words.finish() };
    } finally {
      this.rawEscapes = savedRaw;
    }
  }

  private processSingleQuote(): string {
    const sc = this.scanner;
    const keep = this.opts.keepQuotes === true;
    let result = '';
    const open = sc.next();
    if (keep && open !== null) result += open;
    for (;;) {
      const ch = sc.next();
      if (ch === null) throw new LexError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (keep) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    const sc = this.scanner;
    const keep = this.opts.keepQuotes === true;
    let result = '';
    const open = sc.next();
    if (keep && open !== null) result += open;
    for (;;) {
      const peek = sc.peek();
      if (peek === null) throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (peek === '"') {
        sc.next();
        if (keep) result += '"';
        return result;
      }
      if (peek === '$') {
        result += this.processDollar();
        continue;
      }
      let ch = sc.next() as string;
      if (ch === this.escape) {
        if (this.rawEscapes) result += ch;
        const after = sc.peek();
        // An escape right before the end is dropped; the missing quote is reported next round.
        if (after === null) continue;
        // Only `"`, `$` and the escape itself can be escaped; otherwise the escape stays.
        if (after === '"' || after === '$' || after === this.escape) ch = sc.next() as string;
      }
      result += ch;
    }
  }

  private processDollar(): string {
    const sc = this.scanner;
    const skipUnset = this.opts.skipUnsetEnv === true;
    sc.next();

    if (sc.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined && skipUnset) return '$' + name;
      return value ?? '';
    }

    sc.next();
    const first = sc.peek();
    if (first === null) throw new LexError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LexError('syntax error: bad substitution');

    const name = this.processName();
    let ch = sc.next();
    let chs = ch ?? '\ufffd';

    if (ch === '}') {
      const value = this.getEnv(name);
      if (value === undefined && skipUnset) return `\${${name}}`;
      return value ?? '';
    }
    if (ch === '/') return this.processReplace(name);

    let nullIsUnset = false;
    if (ch === ':') {
      nullIsUnset = true;
      ch = sc.next();
      chs += ch ?? '\ufffd';
    } else if (ch !== '+' && ch !== '-' && ch !== '?' && ch !== '#' && ch !== '%') {
      throw new LexError(`unsupported modifier (${chs}) in substitution`);
    }

    // After `:` any character gets here; BuildKit scans the operand before rejecting it.
    const rawEscapes = ch === '#' || ch === '%';
    if (nullIsUnset && rawEscapes) throw new LexError(`unsupported modifier (${chs}) in substitution`);
    let word = this.scanOperand('}', rawEscapes, "syntax error: missing '}'");

    const value = this.getEnv(name);
    const set = value !== undefined;
    if (skipUnset && !set) return `\${${name}${chs}${word}}`;
    const empty = !set || (nullIsUnset && value === '');

    switch (ch) {
      case '-':
        return empty ? word : (value as string);
      case '+':
        return empty ? '' : word;
      case '?':
        if (!set) throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
        if (nullIsUnset && value === '') throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
        return value as string;
      case '%':
      case '#': {
        // `%%`/`##`: the operand (already expanded) starting with the operator again asks for the longest match.
        const greedy = word.length > 0 && word[0] === ch;
        if (greedy) word = word.slice(1);
        return withPattern(word, () =>
          ch === '%' ? trimPatternSuffix(word, value ?? '', greedy) : trimPatternPrefix(word, value ?? '', greedy),
        );
      }
      default:
        throw new LexError(`unsupported modifier (${chs}) in substitution`);
    }
  }

  private processReplace(name: string): string {
    const sc = this.scanner;
    const all = sc.peek() === '/';
    if (all) sc.next();
    const pattern = this.scanOperand('/', true, "syntax error: missing '/' in ${}");
    const replacement = this.scanOperand('}', true, "syntax error: missing '}'");
    const value = this.getEnv(name);
    if (value === undefined && this.opts.skipUnsetEnv === true) return `\${${name}/${pattern}/${replacement}}`;
    return withPattern(pattern, () =>
      all ? replaceAll(value ?? '', pattern, replacement) : replaceFirst(value ?? '', pattern, replacement),
    );
  }

  // An operand runs to `stop`; running out of input is reported as the missing `stop`, whatever failed.
  private scanOperand(stop: string, rawEscapes: boolean, missing: string): string {
    try {
      return this.processStopOn(stop, rawEscapes).text;
    } catch (e) {
      if (e instanceof LexError && this.scanner.peek() === null) throw new LexError(missing);
      throw e;
    }
  }

  private processName(): string {
    const sc = this.scanner;
    let name = '';
    for (let ch = sc.peek(); ch !== null; ch = sc.peek()) {
      if (name === '' && isGoDigit(ch)) {
        // `$1`, `$001`: positional parameters are a run of digits, never letters after them.
        for (let d = sc.peek(); d !== null && isGoDigit(d); d = sc.peek()) name += sc.next();
        return name;
      }
      if (name === '' && SPECIAL_PARAMS.has(ch)) {
        sc.next();
        return ch;
      }
      if (!isGoLetter(ch) && !isGoDigit(ch) && ch !== '_') break;
      name += sc.next();
    }
    return name;
  }

  // `<<` and the blanks after it stay one chunk so a heredoc marker is never split from its name.
  private processPossibleHeredoc(): string {
    const sc = this.scanner;
    sc.next();
    if (sc.peek() !== '<') return '<';
    sc.next();
    let result = '<<';
    for (let ch = sc.peek(); ch === '\t' || ch === '\r' || ch === ' '; ch = sc.peek()) result += sc.next();
    return result;
  }
}

function withPattern(pattern: string, fn: () => string): string {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ShellPatternError) throw new LexError(`invalid pattern (${pattern}) in substitution: ${e.message}`);
    throw e;
  }
}

function hintFor(message: string): string | undefined {
  if (message.startsWith('unexpected end of statement')) return 'close the quote, or escape the quote character if it is meant literally';
  if (message.startsWith('syntax error') || message.startsWith('unsupported modifier')) {
    return 'supported forms: $VAR, ${VAR}, ${VAR:-x}, ${VAR-x}, ${VAR:+x}, ${VAR+x}, ${VAR:?msg}, ${VAR?msg}, ${VAR#p}, ${VAR##p}, ${VAR%p}, ${VAR%%p}, ${VAR/p/r}, ${VAR//p/r}; escape a literal $ as \\$';
  }
  if (message.startsWith('invalid pattern')) return 'in patterns only \\*, \\? and \\\\ may be escaped';
  return undefined;
}
