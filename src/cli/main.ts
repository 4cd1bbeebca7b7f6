// Entry point of the `strata` command: wires subcommands and turns StrataErrors into clean exits.
import { Command, CommanderError } from 'commander';
import { isStrataError } from '../errors.js';
import { registerDebug } from './commands/debug.js';
import { registerBuild } from './commands/build.js';
import { registerImages } from './commands/images.js';
import { registerHistory } from './commands/history.js';
import { registerDoctor } from './commands/doctor.js';
import { registerDuPrune } from './commands/du-prune.js';
import { registerMount } from './commands/mount.js';
import { registerCache } from './commands/cache.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('strata')
    .description('Build OCI images from Dockerfiles with a cache you can see, share and control')
    .version('0.1.0')
    .showHelpAfterError()
    .enablePositionalOptions()
    .exitOverride();
  registerBuild(program);
  registerImages(program);
  registerHistory(program);
  registerDoctor(program);
  registerDuPrune(program);
  registerMount(program);
  registerCache(program);
  registerDebug(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (isStrataError(e)) {
      process.stderr.write(`error: ${e.where()}\n`);
      if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
      return 1;
    }
    throw e;
  }
}

// `strata du | head` closes our stdout early: that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

let settled = false;
// A command whose work never settles (a hung stream) would otherwise end with exit code 0.
process.on('beforeExit', () => {
  if (!settled) {
    process.stderr.write('strata: internal error: the command stopped before it finished\n');
    process.exitCode = 70;
    settled = true;
  }
});

main(process.argv.slice(2)).then(
  (code) => {
    settled = true;
    process.exitCode = code;
  },
  (e: unknown) => {
    settled = true;
    process.stderr.write(`strata: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 70;
  },
);
