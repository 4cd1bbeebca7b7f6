// End to end: `bin/strata debug expand` (the compiled CLI) on hand-picked words and on every real-world
// word of the conformance data, grouped by escape character and mode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const conformanceDir = process.env.STRATA_CONFORMANCE_DIR ?? join(repoRoot, '..', 'shared', 'conformance');
const strata = join(repoRoot, 'bin', 'strata');

function expand(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [strata, 'debug', 'expand', ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('the CLI has been built', () => {
  assert.ok(existsSync(join(repoRoot, 'dist', 'src', 'cli', 'main.js')), 'run `npx tsc -p tsconfig.json` first');
});

test('one line per word, --env in order with later values winning', () => {
  const r = expand(['--env', 'A=1', '--env', 'B=two words', '--env', 'A=3', '$A', '${B}!', '${C:-dflt}', '']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '3\ntwo words!\ndflt\n\n');
});

test('--words prints JSON arrays', () => {
  const r = expand(['--words', '--env', 'S=a  b', 'x${S}y', '"q $S"', '""']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '["xa","by"]\n["q a  b"]\n[]\n');
});

test('--escape selects the backtick', () => {
  const r = expand(['--escape', '`', '--env', 'P=x', 'C:\\dir\\$P', 'a`$P']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'C:\\dir\\x\na$P\n');
  const bad = expand(['--escape', '^', 'x']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--escape must be/);
});

test('a failing word prints an error line and the command still exits 0', () => {
  const r = expand(['ok', '${FOO:?}', "'open", 'after']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    r.stdout,
    'ok\nerror: failed to process "${FOO:?}": FOO: is not allowed to be unset\n' +
      'error: failed to process "\'open": unexpected end of statement while looking for matching single-quote\nafter\n',
  );
});

test('words that look like options', () => {
  // Options come first; `--` lets the first word start with `-`; after the first word all are words.
  const r = expand(['--env', 'V=v', '--', '-x$V', '--words', '-h']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '-xv\n--words\n-h\n');
  const later = expand(['--words', 'a', '-y', '--env', '-h']);
  assert.equal(later.status, 0, later.stderr);
  assert.equal(later.stdout, '["a"]\n["-y"]\n["--env"]\n["-h"]\n');
});

interface LexerCase {
  id: string;
  escape: string;
  mode: 'word' | 'words';
  word: string;
  expect: string;
}

test('every real-world word through the CLI', () => {
  const envList = JSON.parse(readFileSync(join(conformanceDir, 'realworld', 'lexer-env.json'), 'utf8')) as string[];
  const cases = readFileSync(join(conformanceDir, 'realworld', 'lexer.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as LexerCase);
  const groups = new Map<string, LexerCase[]>();
  for (const c of cases) {
    const key = `${c.escape}\0${c.mode}`;
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  let checked = 0;
  for (const group of groups.values()) {
    const { escape, mode } = group[0];
    const args = [...envList.flatMap((e) => ['--env', e]), '--escape', escape, ...(mode === 'words' ? ['--words'] : []), '--', ...group.map((c) => c.word)];
    const r = expand(args);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines.pop(), '', 'output ends with a newline');
    assert.equal(lines.length, group.length);
    group.forEach((c, i) => {
      if (c.expect.startsWith('error:')) assert.match(lines[i], /^error: /, c.id);
      else assert.equal(lines[i], c.expect, c.id);
      checked++;
    });
  }
  assert.equal(checked, 910);
});
