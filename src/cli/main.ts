// Entry point of the `strata` command: wires subcommands and turns StrataErrors into clean exits.
import { Command, CommanderError } from 'commander';
import { isStrataError } from '../errors.js';

type Register = (program: Command) => void;

/**
 * Each command file with the top-level commands it registers, in help order. Only the file of the
 * command being run is loaded (a build never pays for loading `images`, `mount` and their
 * dependencies); help, version and unknown commands load them all.
 */
const COMMANDS: { names: string[]; load: () => Promise<Register> }[] = [
  { names: ['build'], load: async () => (await import('./commands/build.js')).registerBuild },
  { names: ['images', 'save', 'load', 'rmi'], load: async () => (await import('./commands/images.js')).registerImages },
  { names: ['history'], load: async () => (await import('./commands/history.js')).registerHistory },
  { names: ['doctor'], load: async () => (await import('./commands/doctor.js')).registerDoctor },
  { names: ['du', 'prune'], load: async () => (await import('./commands/du-prune.js')).registerDuPrune },
  { names: ['mount'], load: async () => (await import('./commands/mount.js')).registerMount },
  { names: ['cache'], load: async () => (await import('./commands/cache.js')).registerCache },
  { names: ['debug'], load: async () => (await import('./commands/debug.js')).registerDebug },
];

/** The program with the commands `argv` needs (all of them when it names none of them). */
export async function buildProgram(argv: string[] = []): Promise<Command> {
  const program = new Command();
  program
    .name('strata')
    .description('Build OCI images from Dockerfiles with a cache you can see, share and control')
    .version('0.1.0')
    .showHelpAfterError()
    .enablePositionalOptions()
    .exitOverride();
  const named = COMMANDS.find((c) => c.names.includes(argv[0] ?? ''));
  const registers = await Promise.all((named ? [named] : COMMANDS).map((c) => c.load()));
  for (const register of registers) register(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
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
