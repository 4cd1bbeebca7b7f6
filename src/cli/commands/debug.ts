// `strata debug ...`: exact views of the parser and the shell-word expander, for tooling and conformance.
import type { Command } from 'commander';
import { registerDumpDockerfile } from './debug-dump.js';
import { registerExpand } from './debug-expand.js';

export function registerDebug(program: Command): void {
  const debug = program.command('debug').description('Inspect how strata reads Dockerfiles');
  registerDumpDockerfile(debug);
  registerExpand(debug);
}
