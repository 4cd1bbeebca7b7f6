// `strata debug dump-dockerfile [FILE] [--json]`: the parse in BuildKit's test-dump format (or the typed
// instructions as JSON), so the parser can be checked against BuildKit's own answers.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { StrataError, isStrataError } from '../../errors.js';
import { dumpDockerfile } from '../../dockerfile/dump.js';
import { toInstructions } from '../../dockerfile/instructions.js';
import { parseDockerfile } from '../../dockerfile/parser.js';

interface DumpOptions {
  json?: boolean;
}

function readInput(file: string): Buffer {
  try {
    return file === '-' ? readFileSync(0) : readFileSync(file);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new StrataError('FILE_READ', `cannot read ${file === '-' ? 'standard input' : file}: ${why}`, {
      hint: 'give the path of a Dockerfile, or - to read it from standard input',
    });
  }
}

export function registerDumpDockerfile(debug: Command): void {
  debug
    .command('dump-dockerfile')
    .description("Print the parse in BuildKit's test-dump format (one line per instruction)")
    .argument('[file]', 'Dockerfile to parse (- for stdin)', 'Dockerfile')
    .option('--json', 'print the typed instruction list as JSON instead')
    .action((file: string, opts: DumpOptions) => {
      const data = readInput(file);
      try {
        const parsed = parseDockerfile(data, file);
        for (const w of parsed.warnings) process.stderr.write(`${file}:${w.line}: warning: ${w.message}\n`);
        const out = opts.json ? JSON.stringify(toInstructions(parsed), null, 2) : dumpDockerfile(parsed);
        process.stdout.write(out + '\n');
      } catch (e) {
        if (!isStrataError(e)) throw e;
        // Exactly `FILE:LINE: message`, as BuildKit reports it.
        process.stderr.write(`${e.where()}\n`);
        process.exitCode = 1;
      }
    });
}
