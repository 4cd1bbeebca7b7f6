// End to end: `bin/strata debug dump-dockerfile` (the compiled CLI) on conformance files and stdin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const conformanceDir = process.env.STRATA_CONFORMANCE_DIR ?? join(repoRoot, '..', 'shared', 'conformance');
const strata = join(repoRoot, 'bin', 'strata');

function dump(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [strata, 'debug', 'dump-dockerfile', ...args], {
    encoding: 'utf8',
    input,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('prints the dump exactly and exits 0', () => {
  for (const c of ['json', 'escapes', 'health', 'continue-at-eof', 'escape-nonewline']) {
    const dir = join(conformanceDir, 'parser', c);
    const r = dump([join(dir, 'Dockerfile')]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, readFileSync(join(dir, 'result'), 'utf8'), c);
  }
});

test('a refused file: exit 1 and exactly FILE:LINE: message on stderr', () => {
  const file = join(conformanceDir, 'parser-negative', 'env_no_value', 'Dockerfile');
  const r = dump([file]);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `${file}:3: ENV must have two arguments\n`);

  const nested = join(conformanceDir, 'parser-negative', 'shykes-nested-json', 'Dockerfile');
  const r2 = dump([nested]);
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /^.*Dockerfile:\d+: when using JSON array syntax, arrays must be comprised of strings only\n$/);
});

test('- reads standard input and names it - in messages', () => {
  const ok = dump(['-'], 'FROM busybox\nRUN echo hi \\\n  there\n');
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout, '(from "busybox")\n(run "echo hi   there")\n');
  const bad = dump(['-'], '# only a comment\n\n');
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr, '-:2: file with no instructions\n');
});

test('--json prints the typed instructions; their errors use the same format', () => {
  const r = dump(['-', '--json'], 'FROM alpine AS Build\nCOPY --from=build --chmod=755 a b /dst/\n');
  assert.equal(r.status, 0, r.stderr);
  const list = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  assert.equal(list.length, 2);
  assert.equal(list[0]!.kind, 'from');
  assert.equal(list[0]!.stageName, 'build');
  assert.deepEqual(list[1]!.sources, ['a', 'b']);
  assert.equal(list[1]!.dest, '/dst/');
  assert.equal(list[1]!.from, 'build');
  assert.equal(list[1]!.chmod, '755');
  assert.ok(r.stdout.startsWith('[\n  {\n    "kind"'), 'two-space indentation');

  const bad = dump(['-', '--json'], 'FROM alpine\nRUN --foo=bar true\n');
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr, '-:2: unknown flag: --foo\n');
});

test('a missing file is a clear error', () => {
  const r = dump([join(repoRoot, 'no-such-dir', 'Dockerfile')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cannot read .*no-such-dir\/Dockerfile/);
});
