// BuildKit's parser test format (Node.Dump): one `(keyword ["flags"] "args"...)` line per instruction.
import type { ParsedDockerfile, RawInstruction } from './ast.js';
import { goQuote } from './go-quote.js';

// Go's unicode.IsSpace, for the strings.TrimSpace that Node.Dump applies.
const EDGE_SPACE = /^[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

function dumpNode(ins: RawInstruction): string {
  let s = ins.keyword;
  if (ins.flags.length > 0) s += ' [' + ins.flags.map(goQuote).join(' ') + ']';
  if (ins.nested) {
    s += ' (' + dumpNode(ins.nested) + ')';
  } else {
    for (const a of ins.args) s += ' ' + goQuote(a);
  }
  return s.replace(EDGE_SPACE, '');
}

/** One instruction as its dump line, without the line end. */
export function dumpInstruction(ins: RawInstruction): string {
  return '(' + dumpNode(ins) + ')';
}

/** The whole dump: BuildKit's `result` file content without its final newline. */
export function dumpDockerfile(p: ParsedDockerfile): string {
  return p.instructions.map(dumpInstruction).join('\n');
}
