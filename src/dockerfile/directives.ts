// Parser directives (`# syntax=...`, `# escape=...`, `# check=...`) at the top of a Dockerfile.
// Byte strings throughout (see bytes.ts).
import { trimLeftSpace } from './bytes.js';
import { LineError } from './line-parsers.js';

export interface Directive {
  name: 'syntax' | 'escape' | 'check';
  value: string;
}

const VALID = new Set(['syntax', 'escape', 'check']);
// Go's `\s` is [\t\n\f\r ] and its `.` is anything but LF (a JS `.` would also refuse CR).
const DIRECTIVE = /^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/;

/** Reads directives line by line until the first line that is not one; then it stays done. */
export class DirectiveParser {
  private readonly seen = new Set<string>();
  private done = false;

  /** `line` has its line end and leading whitespace removed. Throws LineError on a repeated directive. */
  parseLine(line: string): Directive | null {
    if (this.done) return null;
    if (!line.startsWith('#')) {
      this.done = true;
      return null;
    }
    const m = DIRECTIVE.exec(trimLeftSpace(line.slice(1)));
    if (!m) {
      this.done = true;
      return null;
    }
    const name = m[1]!.toLowerCase();
    if (!VALID.has(name)) {
      this.done = true;
      return null;
    }
    if (this.seen.has(name)) throw new LineError(`only one ${name} parser directive can be used`);
    this.seen.add(name);
    return { name: name as Directive['name'], value: m[2]! };
  }
}
