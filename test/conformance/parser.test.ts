// Every parser case of the conformance data (BuildKit's testfiles, testfiles-negative, testfile-line and
// the 696 real-world Dockerfiles with BuildKit's answers), one subtest per case, as FORMAT.md describes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDockerfile } from '../../src/dockerfile/parser.js';
import { dumpDockerfile } from '../../src/dockerfile/dump.js';
import { isStrataError } from '../../src/errors.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const conformanceDir = process.env.STRATA_CONFORMANCE_DIR ?? join(repoRoot, '..', 'shared', 'conformance');

let passed = 0;

function dirs(path: string): string[] {
  return readdirSync(path)
    .filter((n) => statSync(join(path, n)).isDirectory())
    .sort();
}

/** A parse that must fail: it throws a StrataError carrying the file and a line. */
function assertRefused(data: Buffer, name: string): string {
  try {
    parseDockerfile(data, name);
  } catch (e) {
    assert.ok(isStrataError(e), `not a StrataError: ${String(e)}`);
    assert.equal(e.position?.file, name);
    assert.equal(typeof e.position?.line, 'number');
    return e.message;
  }
  assert.fail(`${name}: BuildKit refuses this file, strata accepted it`);
}

test('the conformance data is there', () => {
  assert.ok(existsSync(join(conformanceDir, 'FORMAT.md')), `no conformance data at ${conformanceDir} (set STRATA_CONFORMANCE_DIR)`);
});

test('parser/: dump + "\\n" equals result', async (t) => {
  const root = join(conformanceDir, 'parser');
  const cases = dirs(root);
  assert.equal(cases.length, 33);
  for (const c of cases) {
    await t.test(c, () => {
      const parsed = parseDockerfile(readFileSync(join(root, c, 'Dockerfile')));
      assert.equal(dumpDockerfile(parsed) + '\n', readFileSync(join(root, c, 'result'), 'utf8'));
      passed++;
    });
  }
});

test('parser-negative/: the parse fails', async (t) => {
  const root = join(conformanceDir, 'parser-negative');
  const expected: Record<string, string> = {
    empty_dockerfile: 'file with no instructions',
    only_comments: 'file with no instructions',
    env_no_value: 'ENV must have two arguments',
    'shykes-nested-json': 'when using JSON array syntax, arrays must be comprised of strings only',
  };
  const cases = dirs(root);
  assert.deepEqual(cases, Object.keys(expected).sort());
  for (const c of cases) {
    await t.test(c, () => {
      assert.equal(assertRefused(readFileSync(join(root, c, 'Dockerfile')), 'Dockerfile'), expected[c]);
      passed++;
    });
  }
});

test('parser-line/: instruction line ranges', () => {
  const p = parseDockerfile(readFileSync(join(conformanceDir, 'parser-line', 'Dockerfile')));
  assert.deepEqual(
    p.instructions.map((i) => [i.startLine, i.endLine]),
    [
      [5, 5],
      [11, 12],
      [17, 31],
    ],
  );
  assert.equal(p.instructions[0]!.startLine, 5);
  assert.equal(p.instructions[p.instructions.length - 1]!.endLine, 31);
  assert.equal(p.directives.escape, '\\');
  passed++;
});

test('realworld/: every file as BuildKit answers it', async (t) => {
  const root = join(conformanceDir, 'realworld', 'dockerfiles');
  let files = 0;
  for (const repo of dirs(root)) {
    const names = readdirSync(join(root, repo))
      .filter((n) => !n.endsWith('.result') && !n.endsWith('.error'))
      .sort();
    for (const name of names) {
      files++;
      const path = join(root, repo, name);
      await t.test(`${repo}/${name}`, () => {
        const data = readFileSync(path);
        if (existsSync(path + '.result')) {
          const got = dumpDockerfile(parseDockerfile(data, name));
          const want = readFileSync(path + '.result', 'utf8').replace(/\n$/, '');
          assert.equal(got, want);
        } else {
          assert.ok(existsSync(path + '.error'), `${name} has neither .result nor .error`);
          // `NAME:LINE: message`: the wording must be BuildKit's (the line may differ, see parser.ts).
          const want = readFileSync(path + '.error', 'utf8').trim().replace(/^[^:]*:\d+: /, '');
          assert.equal(assertRefused(data, name), want);
        }
        passed++;
      });
    }
  }
  assert.equal(files, 696);
});

test('summary', () => {
  console.log(`parser conformance: ${passed} passed`);
  assert.equal(passed, 33 + 4 + 1 + 696);
});
