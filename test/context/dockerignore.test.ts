// .dockerignore reading and matching. The tables restate, as our own cases, what moby/patternmatcher's
// and ignorefile's tests establish, plus fsutil's rule for skipping ignored directories during a walk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PatternMatcher, parseDockerignore, type MatchInfo } from '../../src/context/dockerignore.js';
import { goCleanPath, goDirPath, goPathMatch } from '../../src/context/pattern-gopath.js';
import { isStrataError } from '../../src/errors.js';

// [pattern, path, ignored?]: one pattern, checked with parent-directory semantics.
const single: Array<[string, string, boolean]> = [
  ['**', 'file', true],
  ['**', 'file/', true],
  ['**/', 'file', true],
  ['**/', 'file/', true],
  ['**', '/', true],
  ['**/', '/', true],
  ['**', 'dir/file', true],
  ['**/', 'dir/file', true],
  ['**', 'dir/file/', true],
  ['**/', 'dir/file/', true],
  ['**/**', 'dir/file', true],
  ['**/**', 'dir/file/', true],
  ['dir/**', 'dir/file', true],
  ['dir/**', 'dir/file/', true],
  ['dir/**', 'dir/dir2/file', true],
  ['dir/**', 'dir/dir2/file/', true],
  ['**/dir', 'dir', true],
  ['**/dir', 'dir/file', true],
  ['**/dir2/*', 'dir/dir2/file', true],
  ['**/dir2/*', 'dir/dir2/file/', true],
  ['**/dir2/**', 'dir/dir2/dir3/file', true],
  ['**/dir2/**', 'dir/dir2/dir3/file/', true],
  ['**file', 'file', true],
  ['**file', 'dir/file', true],
  ['**/file', 'dir/file', true],
  ['**file', 'dir/dir/file', true],
  ['**/file', 'dir/dir/file', true],
  ['**/file*', 'dir/dir/file', true],
  ['**/file*', 'dir/dir/file.txt', true],
  ['**/file*txt', 'dir/dir/file.txt', true],
  ['**/file*.txt', 'dir/dir/file.txt', true],
  ['**/file*.txt*', 'dir/dir/file.txt', true],
  ['**/**/*.txt', 'dir/dir/file.txt', true],
  ['**/**/*.txt2', 'dir/dir/file.txt', false],
  ['**/*.txt', 'file.txt', true],
  ['**/**/*.txt', 'file.txt', true],
  ['a**/*.txt', 'a/file.txt', true],
  ['a**/*.txt', 'a/dir/file.txt', true],
  ['a**/*.txt', 'a/dir/dir/file.txt', true],
  ['a/*.txt', 'a/dir/file.txt', false],
  ['a/*.txt', 'a/file.txt', true],
  ['a/*.txt**', 'a/file.txt', true],
  ['a[b-d]e', 'ae', false],
  ['a[b-d]e', 'ace', true],
  ['a[b-d]e', 'aae', false],
  ['a[^b-d]e', 'aze', true],
  ['.*', '.foo', true],
  ['.*', 'foo', false],
  ['abc.def', 'abcdef', false],
  ['abc.def', 'abc.def', true],
  ['abc.def', 'abcZdef', false],
  ['abc?def', 'abcZdef', true],
  ['abc?def', 'abcdef', false],
  ['a\\\\', 'a\\', true],
  ['**/foo/bar', 'foo/bar', true],
  ['**/foo/bar', 'dir/foo/bar', true],
  ['**/foo/bar', 'dir/dir2/foo/bar', true],
  ['abc/**', 'abc', false],
  ['abc/**', 'abc/def', true],
  ['abc/**', 'abc/def/ghi', true],
  ['**/.foo', '.foo', true],
  ['**/.foo', 'bar.foo', false],
  ['a(b)c/def', 'a(b)c/def', true],
  ['a(b)c/def', 'a(b)c/xyz', false],
  ['a.|)$(}+{bc', 'a.|)$(}+{bc', true],
  ['dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
  ['dist/*.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
  ['a\\*b', 'a*b', true],
  // filepath.Match-style cases
  ['abc', 'abc', true],
  ['*', 'abc', true],
  ['*c', 'abc', true],
  ['a*', 'a', true],
  ['a*', 'abc', true],
  ['a*', 'ab/c', true], // the parent `ab` matches
  ['a*/b', 'abc/b', true],
  ['a*/b', 'a/c/b', false],
  ['a*b*c*d*e*/f', 'axbxcxdxe/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxe/xxx/f', false],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/fff', false],
  ['a*b?c*x', 'abxbbxdbxebxczzx', true],
  ['a*b?c*x', 'abxbbxdbxebxczzy', false],
  ['ab[c]', 'abc', true],
  ['ab[b-d]', 'abc', true],
  ['ab[e-g]', 'abc', false],
  ['ab[^c]', 'abc', false],
  ['ab[^b-d]', 'abc', false],
  ['ab[^e-g]', 'abc', true],
  ['a\\*b', 'ab', false],
  ['a?b', 'a☺b', true],
  ['a[^a]b', 'a☺b', true],
  ['a???b', 'a☺b', false],
  ['a[^a][^a][^a]b', 'a☺b', false],
  ['[a-ζ]*', 'α', true],
  ['*[a-ζ]', 'A', false],
  ['a?b', 'a/b', false],
  ['a*b', 'a/b', false],
  ['[\\]a]', ']', true],
  ['[\\-]', '-', true],
  ['[x\\-]', 'x', true],
  ['[x\\-]', '-', true],
  ['[x\\-]', 'z', false],
  ['[\\-x]', 'x', true],
  ['[\\-x]', '-', true],
  ['[\\-x]', 'a', false],
  ['*x', 'xxx', true],
  // Go regexp details that show through
  ['[[:digit:]]*.log', '7days.log', true],
  ['[[:digit:]]*.log', 'days.log', false],
  ['[[:^digit:]]*', 'x', true],
  ['a\\d', 'a5', true], // `\d` reaches Go's regexp as a digit class
  ['a\\d', 'ad', false],
  ['a^b', 'a^b', true], // no wildcard: compared as a plain string
  ['a^*', 'a^b', false], // with a wildcard it is a regexp, where `^` is an anchor: never matches mid-path
  ['*', 'a\nb', true],
  ['**/x', 'a\nb/x', true], // a plain suffix test
  ['**/x*', 'a\nb/x', false], // as a regexp: Go's `.` (in `**`) stops at a newline
  // leading/trailing slashes and cleaning
  ['/docs', 'docs/index.md', false], // only parseDockerignore drops the leading slash
  ['docs/', 'docs/index.md', true],
  ['./docs//api/../', 'docs/a', true],
  ['docs', 'docsy', false],
  ['Dockerfile', 'Dockerfile', true],
  ['.dockerignore', '.dockerignore', true],
];

// [patterns, path, ignored?]
const multi: Array<[string[], string, boolean]> = [
  [['**', '!util/docker/web'], 'util/docker/web/foo', false],
  [['**', '!util/docker/web', 'util/docker/web/foo'], 'util/docker/web/foo', true],
  [['**', '!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', false],
  [['**', '!dist/*.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', false],
  [['*'], 'fileutils.go', true],
  [['*.go'], 'fileutils.go', true],
  [['!fileutils.go', '*.go'], 'fileutils.go', true], // an exception only undoes earlier patterns
  [['*.go', '!fileutils.go'], 'fileutils.go', false],
  [['docs', '!docs/README.md'], 'docs/README.md', false],
  [['docs/', '!docs/README.md'], 'docs/README.md', false],
  [['docs/*', '!docs/README.md'], 'docs/README.md', false],
  [['docs', '!docs/README.md'], 'docs/other.md', true],
  [['*.md', '!README*.md', 'README-secret.md'], 'README-secret.md', true],
  [['*.md', '!README*.md', 'README-secret.md'], 'README.md', false],
  [[], 'any/path/there', false],
  [['docs', ''], 'docs', true],
  [['docs', '  !docs/README.md'], 'docs/README.md', false],
  [['docs', '!docs/README.md  '], 'docs/README.md', false],
  [['*', '!*.go', 'vendor'], 'vendor/x.go', true],
  [['*', '!*.go', 'vendor'], 'main.go', false],
];

// The walk form: directories are visited parent first, each passing its MatchInfo to its children.
function walkMatch(pm: PatternMatcher, path: string): boolean {
  const parent = goDirPath(path);
  let info: MatchInfo | undefined;
  if (parent !== '.') {
    const dirs = parent.split('/');
    for (let i = 0; i < dirs.length; i++) info = pm.matchWithParent(dirs.slice(0, i + 1).join('/'), info).info;
  }
  return pm.matchWithParent(path, info).matched;
}

test('single patterns match paths and their parents', async (t) => {
  for (const [pattern, path, want] of single) {
    await t.test(`${JSON.stringify(pattern)} vs ${JSON.stringify(path)}`, () => {
      const pm = new PatternMatcher([pattern]);
      assert.equal(pm.matches(path), want, 'matches');
      assert.equal(walkMatch(pm, path), want, 'matchWithParent during a walk');
      assert.equal(pm.matchWithParent(path).matched, want, 'matchWithParent without parent info');
    });
  }
});

test('pattern lists: order, exceptions, re-inclusion', async (t) => {
  for (const [patterns, path, want] of multi) {
    await t.test(`${JSON.stringify(patterns)} vs ${JSON.stringify(path)}`, () => {
      const pm = new PatternMatcher(patterns);
      assert.equal(pm.matches(path), want, 'matches');
      assert.equal(walkMatch(pm, path), want, 'matchWithParent during a walk');
      assert.equal(pm.matchWithParent(path).matched, want, 'matchWithParent without parent info');
    });
  }
});

function assertPatternError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => isStrataError(e) && e.code === 'DOCKERIGNORE_PATTERN' && re.test(e.message));
}

test('malformed patterns are refused when the matcher is built', () => {
  for (const bad of ['[', '[^', '[^bc', 'a[', '[]a]', '[-]', '[x-]', '[-x]', '\\', '[a-b-c]', 'ok/[']) {
    assertPatternError(() => new PatternMatcher([bad]), /syntax error in pattern/);
  }
  assertPatternError(() => new PatternMatcher(['!']), /illegal exclusion pattern/);
  assertPatternError(() => new PatternMatcher(['docs', '  !  ']), /illegal exclusion pattern/);
});

test('a class Go cannot compile fails on every check, not at construction', () => {
  const pm = new PatternMatcher(['[Local-Only]/']);
  assertPatternError(() => pm.matches('x'), /syntax error in pattern/);
  assertPatternError(() => pm.matches('x'), /syntax error in pattern/);
  // An exception that is never consulted never fails, as in BuildKit.
  const lazy = new PatternMatcher(['!a[z-a]']);
  assert.equal(lazy.matches('x'), false);
});

test('exclusions and the cleaned pattern list', () => {
  assert.equal(new PatternMatcher(['docs', 'config']).exclusions, false);
  const pm = new PatternMatcher(['docs/', './config//x', '', '!docs/README.md']);
  assert.equal(pm.exclusions, true);
  assert.deepEqual(pm.patterns, ['docs', 'config/x', '!docs/README.md']);
});

test('parseDockerignore reads the file like BuildKit', () => {
  const content = 'test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ';
  assert.deepEqual(parseDockerignore(content), ['test1', 'test2', 'a/file/here', 'lastfile', '!inverted/abs/path', '!', '!']);
  assert.deepEqual(parseDockerignore(''), []);
  // BOM, CRLF, comments only at column 0, whitespace trimming (Unicode spaces too), cleaning
  assert.deepEqual(parseDockerignore('\ufeff# c\r\nnode_modules\r\n  # not a comment\r\n\u00a0*.log\u3000\r\n./a/../b//c/\n/\n'), [
    'node_modules',
    '# not a comment',
    '*.log',
    'b/c',
    '/',
  ]);
  // An over-long line makes the file unreadable, as bufio.Scanner's limit does in BuildKit.
  assert.doesNotThrow(() => parseDockerignore('x'.repeat(65535) + '\n'));
  assert.throws(() => parseDockerignore('x'.repeat(65536) + '\n'), (e: unknown) => isStrataError(e) && e.code === 'DOCKERIGNORE_PARSE');
});

test('parsed file drives the matcher end to end', () => {
  const pm = new PatternMatcher(parseDockerignore('# deps\nnode_modules\n**/*.tmp\n/build\n!/build/keep.txt\nDockerfile\n'));
  assert.equal(pm.matches('node_modules/x/index.js'), true);
  assert.equal(pm.matches('src/a/b.tmp'), true);
  assert.equal(pm.matches('build/out.o'), true);
  assert.equal(pm.matches('build/keep.txt'), false);
  assert.equal(pm.matches('Dockerfile'), true, 'Dockerfile is an ordinary path for .dockerignore');
  assert.equal(pm.matches('src/main.ts'), false);
});

test('directory skipping during a walk follows fsutil', () => {
  const plain = new PatternMatcher(['node_modules', 'build']);
  assert.equal(plain.isExcludedDir('node_modules'), true);
  assert.equal(plain.isExcludedDir('src'), false, 'a kept directory is never skipped');

  const withException = new PatternMatcher(['build', '!build/keep/**', 'cache']);
  assert.equal(withException.mayReinclude('build'), true);
  assert.equal(withException.isExcludedDir('build'), false, 'an exception below it needs the walk');
  assert.equal(withException.mayReinclude('build/keep'), true);
  assert.equal(withException.mayReinclude('cache'), false);
  assert.equal(withException.isExcludedDir('cache'), true);
  assert.equal(withException.matches('build/other.o'), true);
  assert.equal(withException.matches('build/keep/a/b.txt'), false);

  // An exception with wildcards (other than a trailing /* or /**) could match anywhere: never skip.
  const globbed = new PatternMatcher(['vendor', '!**/LICENSE']);
  assert.equal(globbed.mayReinclude('vendor'), true);
  assert.equal(globbed.isExcludedDir('vendor'), false);
  assert.equal(globbed.matches('vendor/x/LICENSE'), false);
  assert.equal(globbed.matches('vendor/x/code.go'), true);

  // The matched flag from a walk can be passed in instead of being recomputed.
  assert.equal(plain.isExcludedDir('anything', false), false);
});

test('Go path helpers', () => {
  const clean: Array<[string, string]> = [
    ['', '.'],
    ['a//b/', 'a/b'],
    ['./a/./b', 'a/b'],
    ['a/../..', '..'],
    ['/../a', '/a'],
    ['/', '/'],
    ['!./x', '!./x'],
  ];
  for (const [input, want] of clean) assert.equal(goCleanPath(input), want, input);
  assert.equal(goDirPath('a/b/c'), 'a/b');
  assert.equal(goDirPath('file'), '.');
  assert.equal(goDirPath('file/'), 'file');
  assert.equal(goPathMatch('a*/b', 'abc/b'), true);
  assert.equal(goPathMatch('a*', 'ab/c'), false);
  assert.equal(goPathMatch('[^a]', 'b'), true);
});
