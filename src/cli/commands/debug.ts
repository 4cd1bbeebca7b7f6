// `strata debug ...`: exact views of the parser and the shell-word expander, for tooling and conformance.
import type { Command } from 'commander';
import { registerExpand } from './debug-expand.js';

export function registerDebug(program: Command): void {
  const debug = program.command('debug').description('Inspect how strata reads Dockerfiles');
  registerExpand(debug);
  debug
    .command('dump-dockerfile')
    .argument('[file]', 'Dockerfile to parse (- for stdin)', 'Dockerfile')
    .option('--json', 'print the typed instruction list')
    .description('Print the parse in BuildKit\'s test-dump format')
    .action(() => {
      throw new Error('not implemented yet');
    });
}
