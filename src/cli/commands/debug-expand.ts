// `strata debug expand`: runs the shell-word expander on each WORD, one output line per WORD, so the
// lexer can be checked against BuildKit's answers from the command line.
import type { Command } from 'commander';
import { StrataError, isStrataError } from '../../errors.js';
import { ShellLexer, envFromList, type EscapeToken } from '../../dockerfile/shell-lexer.js';

interface ExpandOptions {
  env: string[];
  escape: string;
  words?: boolean;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerExpand(debug: Command): void {
  // passThroughOptions needs it; `debug` itself has no options of its own, so nothing else changes.
  debug.enablePositionalOptions();
  debug
    .command('expand')
    .description('Expand shell words as a Dockerfile instruction would (one output line per WORD)')
    .argument('<word...>', 'words to expand (options go first; put -- before a first word that starts with -)')
    .option('--env <K=V>', 'set a variable (repeatable; a later K replaces an earlier one)', collect, [])
    .option('--escape <char>', 'escape character: \\ or a backtick', '\\')
    .option('--words', 'split into words and print them as a JSON array')
    // Options come first; from the first WORD on everything is a word, so `-x` or `--foo=$V` need no `--`.
    .passThroughOptions()
    .action((words: string[], opts: ExpandOptions) => {
      if (opts.escape !== '\\' && opts.escape !== '`') {
        throw new StrataError('CLI_USAGE', `--escape must be \\ or a backtick, not ${JSON.stringify(opts.escape)}`, {
          hint: 'use --escape \'`\' for a Dockerfile with "# escape=`"',
        });
      }
      const lexer = new ShellLexer(opts.escape as EscapeToken);
      const env = envFromList(opts.env);
      const out: string[] = [];
      for (const word of words) {
        try {
          out.push(opts.words ? JSON.stringify(lexer.processWords(word, env).words) : lexer.processWord(word, env).result);
        } catch (e) {
          if (!isStrataError(e)) throw e;
          out.push(`error: ${e.message}`);
        }
      }
      process.stdout.write(out.map((line) => line + '\n').join(''));
    });
}
