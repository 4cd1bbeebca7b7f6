// Unit tests for the shell-word expander: error messages, pattern operators, which variables an
// expansion used, options, Unicode handling and BuildKit quirks the conformance files do not pin down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShellLexer, envFromList, expandWithEnv, type EnvLookup } from '../../src/dockerfile/shell-lexer.js';
import { compileShellPattern, replaceAll, reversePattern, reverseString } from '../../src/dockerfile/shell-pattern.js';
import { goQuote, isGoSpace } from '../../src/dockerfile/shell-chars.js';
import { isStrataError } from '../../src/errors.js';

const lex = new ShellLexer('\\');

function env(obj: Record<string, string>): Map<string, string> {
  return new Map(Object.entries(obj));
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isStrataError(e), `expected a StrataError, got ${String(e)}`);
    assert.equal(e.code, 'SHELL_EXPAND');
    return e.message;
  }
  assert.fail('expected an error');
}

test('${VAR?msg} and ${VAR:?msg} messages', () => {
  const setEnv = envFromList(['VAR=plain', 'ARG=x']);
  const emptyEnv = envFromList(['VAR=', 'ARG=x']);
  const unsetEnv = envFromList(['ARG=x']);
  const noEmpty = '${VAR:?message here$ARG}';
  const noUnset = '${VAR?message here$ARG}';
  assert.equal(lex.processWord(noEmpty, setEnv).result, 'plain');
  assert.equal(errorOf(() => lex.processWord(noEmpty, emptyEnv)), 'failed to process "${VAR:?message here$ARG}": VAR: message herex');
  assert.equal(errorOf(() => lex.processWord(noEmpty, unsetEnv)), 'failed to process "${VAR:?message here$ARG}": VAR: message herex');
  assert.equal(lex.processWord(noUnset, setEnv).result, 'plain');
  assert.equal(lex.processWord(noUnset, emptyEnv).result, '');
  assert.equal(errorOf(() => lex.processWord(noUnset, unsetEnv)), 'failed to process "${VAR?message here$ARG}": VAR: message herex');
  assert.equal(errorOf(() => lex.processWord('${FOO:?}', env({}))), 'failed to process "${FOO:?}": FOO: is not allowed to be unset');
  assert.equal(errorOf(() => lex.processWord('${FOO:?}', env({ FOO: '' }))), 'failed to process "${FOO:?}": FOO: is not allowed to be empty');
});

test('syntax error messages', () => {
  const cases: Array<[string, string]> = [
    ["'a\\'b'", 'failed to process "\'a\\\\\'b\'": unexpected end of statement while looking for matching single-quote'],
    ['"abc', 'failed to process "\\"abc": unexpected end of statement while looking for matching double-quote'],
    ['${}', 'failed to process "${}": syntax error: bad substitution'],
    ['${:-x}', 'failed to process "${:-x}": syntax error: bad substitution'],
    ['he${', 'failed to process "he${": syntax error: missing \'}\''],
    ['${a:-b', 'failed to process "${a:-b": syntax error: missing \'}\''],
    ['${a:-"b}', 'failed to process "${a:-\\"b}": syntax error: missing \'}\''],
    ['${a/b', 'failed to process "${a/b": syntax error: missing \'/\' in ${}'],
    ['${a/b/c', 'failed to process "${a/b/c": syntax error: missing \'}\''],
    ['${a=x}', 'failed to process "${a=x}": unsupported modifier (=) in substitution'],
    ['${a:=x}', 'failed to process "${a:=x}": unsupported modifier (:=) in substitution'],
    ['${a:#x}', 'failed to process "${a:#x}": unsupported modifier (:#) in substitution'],
    ['${a:%%x}', 'failed to process "${a:%%x}": unsupported modifier (:%) in substitution'],
    ['${.}', 'failed to process "${.}": unsupported modifier (.) in substitution'],
    ['${PWD', 'failed to process "${PWD": unsupported modifier (\ufffd) in substitution'],
    ['${a#\\x}', 'failed to process "${a#\\\\x}": invalid pattern (\\x) in substitution: invalid escape \'\\x\''],
  ];
  for (const [word, message] of cases) assert.equal(errorOf(() => lex.processWord(word, env({ a: 'v' }))), message, word);
  assert.equal(goQuote('tab\there\u0001 é\u00a0"\\'), '"tab\\there\\x01 é\\u00a0\\"\\\\"');
});

test('errors carry a hint', () => {
  try {
    lex.processWord('${a:=x}', env({}));
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(isStrataError(e));
    assert.match(e.hint ?? '', /\$\{VAR:-x\}/);
  }
});

test('pattern removal: # ## % %%', () => {
  const cases: Array<[string, Record<string, string>, string]> = [
    ['${FOO#()[]{\\}^$.\\*\\?|\\\\}', { FOO: '()[]{}^$.*?|\\x' }, 'x'],
    ['${FOO%%\\**}', { FOO: 'xx**' }, 'xx'],
    ['${FOO#*x*y}', { FOO: 'xxyy' }, 'y'],
    ['${FOO#*}', { FOO: 'xxyy' }, 'xxyy'],
    ['${FOO#$BAR}', { FOO: 'xxyy', BAR: 'x' }, 'xyy'],
    ['${FOO#$BAR}', { FOO: 'xxyy', BAR: '' }, 'xxyy'],
    ['${FOO#}', { FOO: 'xxyy' }, 'xxyy'],
    ['${FOO##*x}', { FOO: 'xxyy' }, 'yy'],
    ['${FOO##}', { FOO: 'xxyy' }, 'xxyy'],
    ['${FOO#?\\?}', { FOO: '???y' }, '?y'],
    ['${ABC:-.}${FOO%x}${ABC:-.}', { FOO: 'xxyy' }, '.xxyy.'],
    ['${FOO%%\\**\\*}', { FOO: 'a***yy*' }, 'a'],
    ['${FOO%}', { FOO: 'xxyy' }, 'xxyy'],
    ['${FOO%%$BAR}', { FOO: 'xxyy', BAR: '' }, 'xxyy'],
    ['${FOO%.*}', { FOO: 'app.tar.gz' }, 'app.tar'],
    ['${FOO%%.*}', { FOO: 'app.tar.gz' }, 'app'],
    ['${FOO#*/}', { FOO: 'a/b/c' }, 'b/c'],
    ['${FOO##*/}', { FOO: 'a/b/c' }, 'c'],
    ['${FOO%/*}', { FOO: '🖖/🚀/👽' }, '🖖/🚀'],
    ['${FOO#?}', { FOO: '한국어' }, '국어'],
    ['${UNSET#x}', {}, ''],
    ['${FOO#"a"}', { FOO: 'abc' }, 'bc'],
    ['${FOO#\'#\'a}', { FOO: '#abc' }, '#abc'], // the expanded operand starts with #: BuildKit reads it as ##
    ['${FOO#*\\}}', { FOO: 'a}b' }, 'b'],
  ];
  for (const [word, vars, want] of cases) assert.equal(lex.processWord(word, env(vars)).result, want, word);
  for (const bad of ['${FOO:#}', '${FOO:##}', '${FOO:%}', '${FOO:%%}']) assert.throws(() => lex.processWord(bad, env({})), bad);
});

test('pattern replacement: / and //', () => {
  const cases: Array<[string, Record<string, string>, string]> = [
    ['${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}', { FOO: '/foo*/*/*.txt', NEEDLE: '\\*/' }, '/foo.*/*.txt - /foo..*.txt'],
    ['${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}', { FOO: '/tmp/tmp/bar.txt', NEEDLE: '/tmp' }, '/tmp/bar.txt - /bar.txt'],
    ['${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}', { FOO: '/a/foo/b/c.txt', NEEDLE: '/?/', R: '/' }, '/foo/b/c.txt - /foo/c.txt'],
    ['${FOO/$NEEDLE/$R}', { FOO: 'http://google.de', NEEDLE: 'http://', R: 'https://' }, 'https://google.de'],
    ['${FOO//\\//\\/}', { FOO: '/tmp/foo.txt' }, '\\/tmp\\/foo.txt'],
    ['${FOO/$BAR/ww}', { FOO: 'xxyy', BAR: '' }, 'wwxxyy'],
    ['${FOO///}', { FOO: 'xxyy' }, 'xxyy'],
    ['${FOO///}', {}, ''],
    ['${FOO/*/x}', { FOO: 'abc' }, 'x'], // `*` is greedy here
    ['${FOO//b/[$0]}', { FOO: 'abcb' }, 'a[]c[]'], // `$0` inside the operand is a (never set) positional
    ["${FOO//b/'[$0]'}", { FOO: 'abcb' }, 'a[b]c[b]'], // quoted, it reaches Go's template: the match
    ["${FOO/b/'[$0]'}", { FOO: 'abcb' }, 'a[$0]cb'], // the first-only form inserts the text as is
  ];
  for (const [word, vars, want] of cases) assert.equal(lex.processWord(word, env(vars)).result, want, word);
  assert.throws(() => lex.processWord('${FOO//ww}', env({ FOO: 'xxyy' })));
  assert.throws(() => lex.processWord('${FOO//}', env({ FOO: 'xxyy' })));
});

test("replace-all follows Go's ReplaceAllString for empty matches and templates", () => {
  assert.equal(replaceAll('xxyy', '', '-'), '-x-x-y-y-');
  assert.equal(replaceAll('abc', 'b', '$$'), 'a$c');
  assert.equal(replaceAll('abc', 'b', '${0}${0}'), 'abbc');
  assert.equal(replaceAll('abc', 'b', '$x'), 'ac');
  assert.equal(replaceAll('abc', 'b', '$'), 'a$c');
  assert.equal(replaceAll('a\nb', '?', '.'), '.\n.', 'Go `.` does not match LF');
  assert.equal(replaceAll('a\rb', '?', '.'), '...', 'but it matches CR');
});

test('pattern compiler and reversal', () => {
  assert.equal(compileShellPattern('\\*', true, true).test('*'), true);
  assert.equal(compileShellPattern('\\*', true, true).test('a'), false);
  for (const bad of ['\\', '\\x', '\\\\\\']) assert.throws(() => compileShellPattern(bad, true, true), bad);
  assert.equal(reverseString('🖖🚀👽'), '👽🚀🖖');
  const rev: Array<[string, string]> = [
    ['a\\*c', 'c\\*a'],
    ['\\\\\\ab', 'b\\a\\\\'],
    ['ab\\', '\\ba'],
    ['👽\\🚀🖖', '🖖\\🚀👽'],
    ['\\\\b', 'b\\\\'],
  ];
  for (const [input, want] of rev) assert.equal(reversePattern(input), want, input);
});

test('used and unmatched name the variables an expansion looked up', () => {
  const cases: Array<[string, Record<string, string>, string, string[], string[]]> = [
    ['x', { DUMMY: 'dummy' }, 'x', [], []],
    ['x ${UNUSED}', { DUMMY: 'dummy' }, 'x ', [], ['UNUSED']],
    ['x ${FOO}', { FOO: 'y' }, 'x y', ['FOO'], []],
    ['${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}', { FOO: 'xxx', BAR: '' }, 'xxx  ccc', ['FOO', 'BAR'], ['BAZ']],
    ['${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}', { FOO: 'xxx', BAR: '' }, 'xxx bbb ccc', ['FOO', 'BAR'], ['BAZ']],
    ['${FOO:-}', { FOO: 'xxx', BAR: '' }, 'xxx', ['FOO'], []],
    ['${FOO:-}', {}, '', [], ['FOO']],
    ['${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}', { FOO: 'xxx', BAR: '' }, 'aaa bbb ', ['FOO', 'BAR'], ['BAZ']],
    ['${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}', { FOO: 'xxx', BAR: '' }, 'aaa  ', ['FOO', 'BAR'], ['BAZ']],
    ['${FOO?aaa}', { FOO: 'xxx' }, 'xxx', ['FOO'], []],
    ['${BAR?bbb}', { BAR: '' }, '', ['BAR'], []],
    ['$A$B "$C" ${D:-$E}', { A: '1', E: '5' }, '1  5', ['A', 'E'], ['B', 'C', 'D']],
    ['${FOO/$NEEDLE/$R}', { FOO: 'abc', NEEDLE: 'b', R: 'B' }, 'aBc', ['FOO', 'NEEDLE', 'R'], []],
    ["'$QUOTED' \\$ESCAPED", {}, '$QUOTED $ESCAPED', [], []],
  ];
  for (const [word, vars, want, matched, unmatched] of cases) {
    const r = lex.processWord(word, env(vars));
    assert.equal(r.result, want, word);
    assert.deepEqual([...r.used].sort(), [...matched, ...unmatched].sort(), `used: ${word}`);
    assert.deepEqual([...r.unmatched].sort(), [...unmatched].sort(), `unmatched: ${word}`);
  }
  const words = lex.processWords('$A ${B:-x}', env({ A: 'a' }));
  assert.deepEqual([...words.used].sort(), ['A', 'B']);
  assert.deepEqual([...words.unmatched], ['B']);
});

test('release-name style expansion with optional variant', () => {
  const release = 'something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz';
  const base = { VERSION: 'v1.2.3', TARGETOS: 'linux' };
  assert.equal(lex.processWord(release, env({ ...base, TARGETARCH: 'arm', TARGETVARIANT: 'v7' })).result, 'something-v1.2.3.linux-arm-v7.tar.gz');
  assert.equal(lex.processWord(release, env({ ...base, TARGETARCH: 'arm64', TARGETVARIANT: '' })).result, 'something-v1.2.3.linux-arm64.tar.gz');
  assert.equal(lex.processWord(release, env({ ...base, TARGETARCH: 'arm64' })).result, 'something-v1.2.3.linux-arm64.tar.gz');
});

test('env lookup may be a Map or a function; envFromList keeps the last value', () => {
  const fn: EnvLookup = (name) => (name === 'X' ? 'from-fn' : undefined);
  assert.equal(lex.processWord('$X-$Y', fn).result, 'from-fn-');
  const list = envFromList(['car=hat', 'car=bike', 'foo', 'eq=a=b']);
  assert.equal(list.get('car'), 'bike');
  assert.equal(list.get('foo'), '');
  assert.equal(list.get('eq'), 'a=b');
  assert.equal(expandWithEnv('${car}s', list), 'bikes');
  assert.equal(expandWithEnv('a`$car', list, '`'), 'a$car');
});

test('names: digits, special parameters, Unicode letters', () => {
  const e = env({ 'é': 'accent', '변수': 'korean', a1: 'x', _: 'under' });
  const cases: Array<[string, string]> = [
    ['$@@@', '@@'],
    ['he$1x', 'hex'],
    ['$001a', 'a'],
    ['$٣x', 'x'], // Arabic-Indic digit: a positional parameter
    ['$é!', 'accent!'],
    ['${변수}', 'korean'],
    ['$a1.', 'x.'],
    ['$_', 'under'],
    ['$$x', 'x'],
    ['$-x', 'x'],
    ['${#}', ''],
    ['$', '$'],
    ['$.', '$.'],
    ['$ x', '$ x'],
  ];
  for (const [word, want] of cases) assert.equal(lex.processWord(word, e).result, want, word);
});

test('backtick escape token', () => {
  const tick = new ShellLexer('`');
  const e = env({ P: 'C:\\dir' });
  assert.equal(tick.processWord('C:\\path\\$P', e).result, 'C:\\path\\C:\\dir');
  assert.equal(tick.processWord('a``b`$P', e).result, 'a`b$P');
  assert.equal(tick.processWord('"x`"y"', e).result, 'x"y');
  assert.equal(tick.processWord('"x\\ty"', e).result, 'x\\ty');
  assert.deepEqual(tick.processWords('a` b c', e).words, ['a b', 'c']);
  assert.throws(() => new ShellLexer('^' as '\\'));
});

test('word splitting uses Go whitespace, keeps quoted and escaped parts, never yields empty words', () => {
  const e = env({ S: 'a\u00a0b\u0085c\ufeffd', EMPTY: '', SP: '  ' });
  assert.deepEqual(lex.processWords('$S', e).words, ['a', 'b', 'c\ufeffd']);
  assert.deepEqual(lex.processWords('x\u3000y\u2028z', e).words, ['x', 'y', 'z']);
  assert.deepEqual(lex.processWords('"" $EMPTY \'\'', e).words, []);
  assert.deepEqual(lex.processWords('a "" b', e).words, ['a', 'b']);
  assert.deepEqual(lex.processWords('a""b "$SP"', e).words, ['ab', '  ']);
  assert.deepEqual(lex.processWords('one\\ two three', e).words, ['one two', 'three']);
});

test('word splitting loses the text before an operator expansion (BuildKit shares one buffer)', () => {
  const e = env({ SET: 'v' });
  assert.deepEqual(lex.processWords('pre${SET:-x}', e).words, ['v']);
  assert.deepEqual(lex.processWords('pre${UNSET:+x}', e).words, []);
  assert.deepEqual(lex.processWords('a b${SET#v}c', e).words, ['a', 'c']);
  assert.deepEqual(lex.processWords('pre"${SET:-x}"post', e).words, ['vpost']);
  assert.deepEqual(lex.processWords('pre$SET post', e).words, ['prev', 'post'], 'plain $VAR keeps the prefix');
  // The single-word result is not affected.
  assert.equal(lex.processWord('pre${SET:-x}', e).result, 'prev');
});

test('heredoc marker stays one chunk', () => {
  const e = env({});
  assert.deepEqual(lex.processWords('cat <<  EOF x', e).words, ['cat', '<<  EOF', 'x']);
  assert.deepEqual(lex.processWords('a < b', e).words, ['a', '<', 'b']);
  assert.equal(lex.processWord('<<\t\r EOF', e).result, '<<\t\r EOF');
});

test('escapes in and out of quotes', () => {
  const e = env({ PWD: '/home' });
  const cases: Array<[string, string]> = [
    ['abc\\tdef', 'abctdef'],
    ['"abc\\tdef"', 'abc\\tdef'],
    ['"a\\$PWD\\"\\\\"', 'a$PWD"\\'],
    ["'a\\b$PWD'", 'a\\b$PWD'],
    ['hello\\', 'hello'],
    ['he\\\\$PWD', 'he\\/home'],
    ['\ufeff$PWD', '/home'], // a leading BOM is dropped, as Go's text/scanner does
    ['x\ufeff', 'x\ufeff'],
  ];
  for (const [word, want] of cases) assert.equal(lex.processWord(word, e).result, want, word);
  assert.throws(() => lex.processWord('"hello\\', e));
});

test('options: skipUnsetEnv, keepQuotes, keepEscapes, skipProcessQuotes', () => {
  const e = env({ SET: 'v', EMPTY: '' });
  const skip = new ShellLexer('\\', { skipUnsetEnv: true });
  assert.equal(skip.processWord('$SET $UNSET ${UNSET} ${UNSET:-d} ${UNSET#x} ${UNSET/a/b} ${EMPTY:-d}', e).result, 'v $UNSET ${UNSET} ${UNSET:-d} ${UNSET#x} ${UNSET/a/b} d');
  const keep = new ShellLexer('\\', { keepQuotes: true });
  assert.equal(keep.processWord('"a $SET" \'b\'', e).result, '"a v" \'b\'');
  const raw = new ShellLexer('\\', { keepEscapes: true });
  assert.equal(raw.processWord('a\\ b "\\$x"', e).result, 'a\\ b \\$x');
  const noQuotes = new ShellLexer('\\', { skipProcessQuotes: true });
  assert.equal(noQuotes.processWord('"a $SET" \'b', e).result, '"a v" \'b');
});

test('Go whitespace set', () => {
  for (const ch of ['\t', '\n', '\v', '\f', '\r', ' ', '\u0085', '\u00a0', '\u1680', '\u2000', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000']) {
    assert.equal(isGoSpace(ch), true, ch.codePointAt(0)?.toString(16));
  }
  for (const ch of ['\ufeff', '\u200b', '\u180e', 'a', '']) assert.equal(isGoSpace(ch), false, ch.codePointAt(0)?.toString(16));
});
