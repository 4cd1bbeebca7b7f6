// Runs every shell-expansion case of the conformance data (BuildKit's envVarTest and wordsTest, and the
// 910 real-world words with BuildKit's answers) through ShellLexer. Reading rules: FORMAT.md sections 5-6.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ShellLexer, envFromList, type EscapeToken } from '../../src/dockerfile/shell-lexer.js';
import { goTrimSpace } from '../../src/dockerfile/shell-chars.js';

// dist/test/conformance/shell.test.js -> the repository root is three levels up.
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const conformanceDir = process.env.STRATA_CONFORMANCE_DIR ?? join(repoRoot, '..', 'shared', 'conformance');

let passed = 0;
let skipped = 0;

function expandOne(lexer: ShellLexer, word: string, env: Map<string, string>): { ok: true; value: string } | { ok: false; error: string } {
  try {
    return { ok: true, value: lexer.processWord(word, env).result };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

function expandWords(lexer: ShellLexer, word: string, env: Map<string, string>): string[] | 'error' {
  try {
    return lexer.processWords(word, env).words;
  } catch {
    return 'error';
  }
}

test('conformance data is present', () => {
  assert.ok(existsSync(join(conformanceDir, 'shell', 'envVarTest')), `missing ${conformanceDir}/shell/envVarTest (set STRATA_CONFORMANCE_DIR)`);
});

test('shell/envVarTest: expand one word', async (t) => {
  const text = readFileSync(join(conformanceDir, 'shell', 'envVarTest'), 'utf8');
  const env = envFromList(['PWD=/home', 'SHELL=bash', 'KOREAN=한국어', 'NULL=']);
  const lexer = new ShellLexer('\\');
  const lines = text.split('\n');
  let run = 0;
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n];
    if (raw.startsWith('#')) continue;
    const line = goTrimSpace(raw);
    if (line === '') continue;
    const fields = line.split('|');
    assert.equal(fields.length, 3, `envVarTest line ${n + 1} is malformed`);
    const [platform, input, expected] = fields.map(goTrimSpace);
    assert.ok(['A', 'U', 'W'].includes(platform), `envVarTest line ${n + 1}: bad platform ${platform}`);
    const name = `envVarTest:${n + 1} ${platform}|${input}`;
    if (platform === 'W') {
      skipped++;
      await t.test(name, { skip: 'Windows-only: case-insensitive variable names' }, () => {});
      continue;
    }
    run++;
    await t.test(name, () => {
      const got = expandOne(lexer, input, env);
      if (expected === 'error') {
        assert.equal(got.ok, false, `expected an error, got ${JSON.stringify(got)}`);
      } else {
        assert.deepEqual(got, { ok: true, value: expected });
      }
      passed++;
    });
  }
  assert.equal(run, 228, 'envVarTest should have 228 lines that apply on Linux');
});

test('shell/wordsTest: expand and split (normal mode, one pass)', async (t) => {
  const text = readFileSync(join(conformanceDir, 'shell', 'wordsTest'), 'utf8');
  const lexer = new ShellLexer('\\');
  const envList: string[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let run = 0;
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    if (line.startsWith('#')) continue;
    if (line.startsWith('ENV ')) {
      envList.push(line.slice(3).replace(/^ +/, ''));
      continue;
    }
    const fields = line.split('|');
    assert.equal(fields.length, 2, `wordsTest line ${n + 1} is malformed`);
    const input = goTrimSpace(fields[0]);
    const expected = fields[1].replace(/^ +/, '').split(',');
    const env = envFromList(envList);
    run++;
    await t.test(`wordsTest:${n + 1} ${input}`, () => {
      const got = expandWords(lexer, input, env);
      assert.deepEqual(got === 'error' ? ['error'] : got, expected);
      passed++;
    });
  }
  assert.equal(run, 24, 'wordsTest should have 24 test lines');
});

interface LexerCase {
  id: string;
  src: string;
  escape: string;
  mode: 'word' | 'words';
  word: string;
  expect: string;
}

test('realworld/lexer.jsonl: BuildKit answers for real words', async (t) => {
  const env = envFromList(JSON.parse(readFileSync(join(conformanceDir, 'realworld', 'lexer-env.json'), 'utf8')) as string[]);
  const cases = readFileSync(join(conformanceDir, 'realworld', 'lexer.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as LexerCase);
  assert.equal(cases.length, 910);
  const lexers = new Map<string, ShellLexer>();
  for (const c of cases) {
    let lexer = lexers.get(c.escape);
    if (!lexer) {
      lexer = new ShellLexer(c.escape as EscapeToken);
      lexers.set(c.escape, lexer);
    }
    const l = lexer;
    await t.test(`${c.id} ${c.mode} ${c.word}`, () => {
      let out: string;
      try {
        out = c.mode === 'word' ? l.processWord(c.word, env).result : JSON.stringify(l.processWords(c.word, env).words);
      } catch (e) {
        out = `error: ${e instanceof Error ? e.message : String(e)}`;
      }
      if (c.expect.startsWith('error:')) assert.match(out, /^error: /, `expected an error for ${c.src}`);
      else assert.equal(out, c.expect, `from ${c.src}`);
      passed++;
    });
  }
});

test('summary', () => {
  console.log(`shell conformance: ${passed} passed, ${skipped} skipped`);
  assert.equal(passed, 228 + 24 + 910);
});
