// Dockerfile bytes to instructions, reproducing BuildKit's frontend/dockerfile/parser exactly: lines,
// directives, continuations, comments, flags, per-keyword argument rules and heredoc bodies.
// Internally everything is a byte string (see bytes.ts) because Go's parser works on bytes.
import { StrataError } from '../errors.js';
import type { Directives, Heredoc, ParsedDockerfile, ParseWarning, RawInstruction } from './ast.js';
import { fromByteString, goToLower, toByteString, trimLeftSpace, trimSpace } from './bytes.js';
import { DirectiveParser } from './directives.js';
import { chompHeredocContent, heredocsFromLine } from './heredoc.js';
import { DISPATCH, LineError, type ParsedArgs } from './line-parsers.js';
import { splitCommand } from './split-command.js';

/** bufio.Scanner's default limit: a line (without its LF) may hold at most this many bytes. */
export const MAX_LINE_BYTES = 65535;

const HEREDOC_KEYWORDS = new Set(['add', 'copy', 'run']);

interface Node {
  cmd: string;
  lower: string;
  original: string;
  flags: string[];
  parsed: ParsedArgs;
  nested?: Node;
  heredocs: Heredoc[];
  comments: string[];
}

/** Physical lines as bufio.Scanner with BuildKit's split function yields them (LF kept). */
class LineScanner {
  private off = 0;
  /** Physical lines handed out so far. */
  count = 0;
  /** 1-based number of a line longer than MAX_LINE_BYTES; scanning stopped there. */
  tooLongLine = 0;

  constructor(private readonly data: string) {}

  next(): string | null {
    if (this.tooLongLine || this.off >= this.data.length) return null;
    const nl = this.data.indexOf('\n', this.off);
    const contentEnd = nl < 0 ? this.data.length : nl;
    if (contentEnd - this.off > MAX_LINE_BYTES) {
      this.tooLongLine = this.count + 1;
      return null;
    }
    const end = nl < 0 ? this.data.length : nl + 1;
    const line = this.data.slice(this.off, end);
    this.off = end;
    this.count++;
    return line;
  }
}

function isComment(line: string): boolean {
  return trimLeftSpace(line).startsWith('#');
}

function trimNewline(s: string): string {
  let end = s.length;
  while (end > 0 && (s.charCodeAt(end - 1) === 0x0a || s.charCodeAt(end - 1) === 0x0d)) end--;
  return end === s.length ? s : s.slice(0, end);
}

function continuationRegex(escape: string): RegExp {
  const e = '\\' + escape;
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
}

function newNode(line: string, escape: number, comments: string[]): Node {
  const { cmd, flags, rest } = splitCommand(line, escape);
  const lower = goToLower(cmd);
  if (lower === 'onbuild') {
    const nested = rest === '' ? undefined : newNode(rest, escape, []);
    return { cmd, lower, original: line, flags, parsed: { args: [], json: false }, nested, heredocs: [], comments };
  }
  const fn = DISPATCH[lower];
  // Unknown keywords are accepted with their arguments ignored (BuildKit's parseIgnore).
  const parsed = fn ? fn(rest, escape) : { args: [''], json: false };
  return { cmd, lower, original: line, flags, parsed, heredocs: [], comments };
}

function canContainHeredoc(node: Node): boolean {
  const n = node.lower === 'onbuild' && node.nested ? node.nested : node;
  return HEREDOC_KEYWORDS.has(n.lower) && !n.parsed.json;
}

function toRaw(node: Node, startLine: number, endLine: number): RawInstruction {
  const raw: RawInstruction = {
    keyword: fromByteString(node.lower),
    rawKeyword: fromByteString(node.cmd),
    original: fromByteString(node.original),
    flags: node.flags.map(fromByteString),
    args: node.parsed.args.map(fromByteString),
    json: node.parsed.json,
    heredocs: node.heredocs,
    startLine,
    endLine,
    comments: node.comments.map(fromByteString),
  };
  if (node.nested) raw.nested = toRaw(node.nested, startLine, endLine);
  return raw;
}

function fail(file: string, message: string, line: number, endLine?: number, hint?: string): StrataError {
  const position = endLine !== undefined && endLine > line ? { file, line, endLine } : { file, line };
  return new StrataError('DOCKERFILE_PARSE', message, { position, hint });
}

/**
 * Parses a Dockerfile the way BuildKit does. Throws StrataError (code DOCKERFILE_PARSE) with the file
 * and line for everything BuildKit refuses, with BuildKit's wording.
 */
export function parseDockerfile(text: string | Uint8Array, file = 'Dockerfile'): ParsedDockerfile {
  const scanner = new LineScanner(toByteString(text));
  const directiveParser = new DirectiveParser();
  const directives: Directives = { escape: '\\' };
  let escape = 0x5c;
  let contRe = continuationRegex('\\');
  const instructions: RawInstruction[] = [];
  const warnings: ParseWarning[] = [];
  let comments: string[] = [];
  let currentLine = 0;

  const trimContinuation = (line: string): [string, boolean] => {
    if (contRe.test(line)) return [line.replace(contRe, '$1'), false];
    return [line, true];
  };

  for (let raw = scanner.next(); raw !== null; raw = scanner.next()) {
    let bytes = raw;
    if (currentLine === 0 && bytes.startsWith('\xef\xbb\xbf')) bytes = bytes.slice(3);
    if (isComment(bytes)) {
      // BuildKit drops the line's first byte (the `#` only when it is not indented) and trims.
      const comment = fromByteString(trimSpace(bytes.slice(1)));
      if (comment === '') comments = [];
      else comments.push(comment);
    }
    let line = trimLeftSpace(trimNewline(bytes));
    let directive;
    try {
      directive = directiveParser.parseLine(line);
    } catch (e) {
      // BuildKit reports the 0-based index of the line here; strata gives the line itself.
      if (e instanceof LineError) throw fail(file, e.message, currentLine + 1);
      throw e;
    }
    if (directive) {
      comments.pop();
      if (directive.name === 'escape') {
        if (directive.value !== '\\' && directive.value !== '`') {
          throw fail(
            file,
            `invalid escape token '${fromByteString(directive.value)}' does not match \` or \\`,
            currentLine + 1,
            undefined,
            'write # escape=\\ (the default) or # escape=` (a backtick)',
          );
        }
        directives.escape = directive.value;
        escape = directive.value.charCodeAt(0);
        contRe = continuationRegex(directive.value);
      } else {
        directives[directive.name] = fromByteString(directive.value);
      }
    }
    if (isComment(line)) line = '';
    currentLine++;

    const startLine = currentLine;
    let [logical, isEndOfLine] = trimContinuation(line);
    if (isEndOfLine && logical.length === 0) continue;

    let hasEmptyContinuationLine = false;
    while (!isEndOfLine) {
      const next = scanner.next();
      if (next === null) break;
      currentLine++;
      if (isComment(next)) continue;
      const content = trimNewline(next);
      if (trimLeftSpace(content).length === 0) {
        hasEmptyContinuationLine = true;
        continue;
      }
      let part: string;
      [part, isEndOfLine] = trimContinuation(content);
      logical += part;
    }

    if (hasEmptyContinuationLine) {
      warnings.push({ line: currentLine, message: 'Empty continuation line found in: ' + fromByteString(logical) });
    }

    let node: Node;
    try {
      node = newNode(logical, escape, comments);
    } catch (e) {
      if (e instanceof LineError) throw fail(file, e.message, startLine, currentLine);
      throw e;
    }

    if (canContainHeredoc(node) && logical.includes('<<')) {
      let markers;
      try {
        markers = heredocsFromLine(logical);
      } catch (e) {
        if (e instanceof LineError) throw fail(file, e.message, startLine, currentLine);
        throw e;
      }
      for (const marker of markers) {
        let terminated = false;
        let content = '';
        for (let body = scanner.next(); body !== null; body = scanner.next()) {
          currentLine++;
          let candidate = trimNewline(body);
          if (marker.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === marker.name) {
            terminated = true;
            break;
          }
          content += body;
        }
        if (!terminated) {
          throw fail(
            file,
            'unterminated heredoc',
            startLine,
            currentLine,
            `add a line holding only ${fromByteString(marker.name)} to end the heredoc that starts on line ${startLine}`,
          );
        }
        node.heredocs.push({
          name: fromByteString(marker.name),
          content: fromByteString(marker.chomp ? chompHeredocContent(content) : content),
          rawContent: fromByteString(content),
          expand: marker.expand,
          chomp: marker.chomp,
          fileDescriptor: marker.fileDescriptor,
        });
      }
    }

    instructions.push(toRaw(node, startLine, currentLine));
    comments = [];
  }

  if (instructions.length === 0) {
    throw fail(file, 'file with no instructions', Math.max(1, currentLine), undefined, 'a Dockerfile needs at least a FROM line');
  }
  if (scanner.tooLongLine) {
    throw fail(file, `dockerfile line greater than max allowed size of ${MAX_LINE_BYTES}`, scanner.tooLongLine);
  }
  return { file, instructions, directives, warnings };
}
