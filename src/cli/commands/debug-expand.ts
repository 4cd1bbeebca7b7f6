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
  debug
    .command('expand')
    .description('Expand shell words as a Dockerfile instruction would (one output line per WORD)')
    .argument('<word...>', 'words to expand; put -- before words that start with -')
    .option('--env <K=V>', 'set a variable (repeatable; a later K replaces an earlier one)', collect, [])
    .option('--escape <char>', 'escape character: \\ or a backtick', '\\')
    .option('--words', 'split into words and print them as a JSON array')
    // A word such as `-x` or `--foo=$V` is a word to expand, not a mistyped option.
    .allowUnknownOption()
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
