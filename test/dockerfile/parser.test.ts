// The parser's rules one by one: directives, lines, continuations, comments, flags, arguments, JSON,
// errors with their positions. Expected values follow BuildKit's parser (see shared/conformance/FORMAT.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../../src/dockerfile/parser.js';
import { dumpDockerfile } from '../../src/dockerfile/dump.js';
import { parseWords } from '../../src/dockerfile/line-parsers.js';
import { toByteString, fromByteString } from '../../src/dockerfile/bytes.js';
import { StrataError } from '../../src/errors.js';

const dump = (text: string | Buffer): string => dumpDockerfile(parseDockerfile(text));

function refused(text: string | Buffer, file = 'Dockerfile'): StrataError {
  try {
    parseDockerfile(text, file);
  } catch (e) {
    assert.ok(e instanceof StrataError, String(e));
    return e;
  }
  assert.fail('the parse should have failed');
}

test('keyword, flags and arguments by keyword', () => {
  assert.equal(dump('FROM busybox AS build'), '(from "busybox" "AS" "build")');
  assert.equal(dump('from busybox'), '(from "busybox")');
  assert.equal(dump('COPY --from=build --chown=a:b x y /z/'), '(copy ["--from=build" "--chown=a:b"] "x" "y" "/z/")');
  assert.equal(dump('RUN echo   a   b'), '(run "echo   a   b")');
  assert.equal(dump('EXPOSE 80\t443  8080'), '(expose "80" "443" "8080")');
  assert.equal(dump('USER a b'), '(user "a b")');
  assert.equal(dump('CMD'), '(cmd)');
  assert.equal(dump('HEALTHCHECK'), '(healthcheck)');
  assert.equal(dump('HEALTHCHECK NONE'), '(healthcheck "NONE")');
  assert.equal(dump('HEALTHCHECK --interval=5s CMD curl -f x'), '(healthcheck ["--interval=5s"] "CMD" "curl -f x")');
  assert.equal(dump('HEALTHCHECK CMD ["a", "b"]'), '(healthcheck "CMD" "a" "b")');
  assert.equal(dump('VOLUME ["/a", "/b"]'), '(volume "/a" "/b")');
  assert.equal(dump('VOLUME /a /b'), '(volume "/a" "/b")');
  assert.equal(dump('ARG abc="123 456" def'), '(arg "abc=\\"123 456\\"" "def")');
  assert.equal(dump('STOPSIGNAL SIGKILL'), '(stopsignal "SIGKILL")');
});

test('ENV and LABEL: legacy and key=value forms', () => {
  assert.equal(dump('ENV name value  with  spaces'), '(env "name" "value  with  spaces" "")');
  assert.equal(dump('ENV a=1 b="2 3" c=x\\ y'), '(env "a" "1" "=" "b" "\\"2 3\\"" "=" "c" "x\\\\ y" "=")');
  assert.equal(dump('LABEL "k"="v"'), '(label "\\"k\\"" "\\"v\\"" "=")');
  assert.equal(dump('ENV'), '(env)');
  const e1 = refused('FROM x\nENV PATH');
  assert.equal(e1.message, 'ENV must have two arguments');
  assert.deepEqual(e1.position, { file: 'Dockerfile', line: 2 });
  assert.equal(refused('LABEL x').message, 'LABEL must have two arguments');
  const e2 = refused('ENV a=b c');
  assert.equal(e2.message, 'Syntax error - can\'t find = in "c". Must be of the form: name=value');
});

test('the parser word rule keeps quotes and escapes', () => {
  const words = (s: string): string[] => parseWords(toByteString(s), 0x5c).map(fromByteString);
  assert.deepEqual(words('foo'), ['foo']);
  assert.deepEqual(words('foo bar'), ['foo', 'bar']);
  assert.deepEqual(words('foo\\ bar'), ['foo\\ bar']);
  assert.deepEqual(words('foo=bar'), ['foo=bar']);
  assert.deepEqual(words("foo bar 'abc xyz'"), ['foo', 'bar', "'abc xyz'"]);
  assert.deepEqual(words('foo bar "abc xyz"'), ['foo', 'bar', '"abc xyz"']);
  assert.deepEqual(words('àöû'), ['àöû']);
  assert.deepEqual(words('föo bàr "âbc xÿz"'), ['föo', 'bàr', '"âbc xÿz"']);
  // Single quotes do not honour the escape; an unterminated quote runs to the end.
  assert.deepEqual(words("'a\\' b"), ["'a\\'", 'b']);
  assert.deepEqual(words('"a b'), ['"a b']);
  // A trailing escape is dropped.
  assert.deepEqual(words('a\\'), ['a']);
});

test('directives: case-insensitive names, escape, duplicates, end of the block', () => {
  const p = parseDockerfile('# Syntax = docker/dockerfile:1\n#ESCAPE=`\n# check=skip=all\nFROM x\nRUN a `\n  b');
  assert.deepEqual(p.directives, { escape: '`', syntax: 'docker/dockerfile:1', check: 'skip=all' });
  assert.equal(dumpDockerfile(p), '(from "x")\n(run "a   b")');

  const dup = refused('# escape=\\\n# Escape=`\nFROM x');
  assert.equal(dup.message, 'only one escape parser directive can be used');
  assert.equal(dup.position?.line, 2);

  const bad = refused('# escape=^\nFROM x');
  assert.equal(bad.message, "invalid escape token '^' does not match ` or \\");
  assert.equal(bad.position?.line, 1);

  // After an ordinary comment (or a blank line) a directive is just a comment.
  assert.equal(parseDockerfile('# hello\n# escape=`\nFROM x').directives.escape, '\\');
  assert.equal(parseDockerfile('\n# escape=`\nFROM x').directives.escape, '\\');
  // `# foo=bar` ends the block too.
  assert.equal(parseDockerfile('# foo=bar\n# escape=`\nFROM x').directives.escape, '\\');
  // A directive is never dumped and never reaches an instruction's comments.
  const q = parseDockerfile('# syntax=a\n# about x\nFROM x');
  assert.deepEqual(q.instructions[0]!.comments, ['about x']);
});

test('BOM, CRLF and missing final newline', () => {
  assert.equal(dump(Buffer.from('\ufeffFROM x\r\nRUN a \\\r\n b\r\n', 'utf8')), '(from "x")\n(run "a  b")');
  // A BOM is removed on the first line only.
  assert.equal(dump('FROM x\n\ufeffRUN y'), '(from "x")\n(\ufeffrun "")');
  assert.equal(dump('FROM x'), '(from "x")');
});

test('continuations: escaped escape, trailing blanks, comment and empty lines inside', () => {
  assert.equal(dump('RUN a \\\\\nRUN b'), '(run "a \\\\\\\\")\n(run "b")');
  assert.equal(dump('RUN a \\  \t\n b'), '(run "a  b")');
  assert.equal(dump('RUN a \\\n# comment \\\n  # indented\n b'), '(run "a  b")');
  // A comment line never continues, even if it ends with the escape.
  assert.equal(dump('# x \\\nFROM y'), '(from "y")');
  assert.equal(dump('RUN something \\'), '(run "something")');
  // `#` in the middle of a line is not a comment.
  assert.equal(dump('RUN echo # not a comment'), '(run "echo # not a comment")');

  const p = parseDockerfile('FROM x\nRUN something \\\n\n    following \\\n   \n    more\nRUN ok \\\n# c\n  fine');
  assert.equal(p.warnings.length, 1);
  assert.match(p.warnings[0]!.message, /^Empty continuation line found in: RUN something     following     more$/);
  assert.equal(p.warnings[0]!.line, 6);
  assert.deepEqual(
    p.instructions.map((i) => [i.startLine, i.endLine]),
    [
      [1, 1],
      [2, 6],
      [7, 9],
    ],
  );
});

test('comments before an instruction are remembered (BuildKit PrevComment)', () => {
  const p = parseDockerfile('# one\n\n# two\nFROM x\n#\n# three\nRUN y\nRUN z');
  assert.deepEqual(p.instructions[0]!.comments, ['one', 'two']);
  assert.deepEqual(p.instructions[1]!.comments, ['three']);
  assert.deepEqual(p.instructions[2]!.comments, []);
});

test('keywords: Go lower-casing, blank runs only, unknown words accepted', () => {
  // Go maps İ to i (JavaScript would give i + U+0307).
  assert.equal(dump('İNCLUDE x'), '(include "")');
  assert.equal(dump('RUN\u00a0echo hi'), '(run\u00a0echo "")');
  assert.equal(dump('RUN\u000becho hi'), '(run "echo hi")');
  assert.equal(dump('<<<<<<< HEAD'), '(<<<<<<< "")');
  assert.equal(dump('entrypoint["/server"]'), '(entrypoint["/server"] "")');
  assert.equal(dump('ONBUİLD RUN x'), '(onbuild (run "x"))');
  const p = parseDockerfile('FnTrYpOiNt x');
  assert.equal(p.instructions[0]!.keyword, 'fntrypoint');
  assert.equal(p.instructions[0]!.rawKeyword, 'FnTrYpOiNt');
});

test('flags: quotes, escapes, `--` and bytes read one by one', () => {
  assert.equal(dump('COPY --chown="a b" --x=\'c d\' e f'), '(copy ["--chown=a b" "--x=c d"] "e" "f")');
  assert.equal(dump('COPY --a=x\\ y b c'), '(copy ["--a=x y"] "b" "c")');
  assert.equal(dump('RUN -- --not-a-flag'), '(run "--not-a-flag")');
  assert.equal(dump('RUN --a -x'), '(run ["--a"] "-x")');
  assert.equal(dump('RUN --a'), '(run ["--a"])');
  // à is C3 A0: the A0 byte ends the flag, the C3 byte comes out as Ã.
  assert.equal(dump('RUN --mount=à b'), '(run ["--mount=Ã"] "b")');
  assert.equal(dump('RUN --m=é b'), '(run ["--m=Ã©"] "b")');
});

test('JSON form: Go decoding rules', () => {
  assert.equal(dump('CMD []'), '(cmd)');
  assert.equal(dump('CMD [ ]'), '(cmd)');
  assert.equal(dump('CMD ["a\\/b", "\\u00e9", "\\ud83d\\ude00"]'), '(cmd "a/b" "é" "😀")');
  assert.equal(dump('CMD ["\\ud800"]'), '(cmd "\ufffd")');
  assert.equal(dump('CMD ["\\ud800\\u0041"]'), '(cmd "\ufffdA")');
  assert.equal(dump('CMD ["x"] '), '(cmd "x")');
  // Invalid UTF-8 inside a JSON string decodes to U+FFFD; outside JSON it is kept and dumped as \x..
  assert.equal(dump(Buffer.from([...Buffer.from('CMD ["'), 0xff, ...Buffer.from('"]')])), '(cmd "\ufffd")');
  assert.equal(dump(Buffer.from([...Buffer.from('CMD x'), 0xff])), '(cmd "x\\xff")');
  // Not JSON: shell form.
  assert.equal(dump('CMD [1e999]'), '(cmd "[1e999]")');
  assert.equal(dump("CMD ['a']"), '(cmd "[\'a\']")');
  assert.equal(dump('CMD ["a"] x'), '(cmd "[\\"a\\"] x")');
  assert.equal(dump('CMD ["a\\x"]'), '(cmd "[\\"a\\\\x\\"]")');
  assert.equal(dump('CMD [01]'), '(cmd "[01]")');
  assert.equal(dump('COPY ["a" "b"]'), '(copy "[\\"a\\"" "\\"b\\"]")');
  // JSON form is chosen whatever the escape character.
  assert.equal(dump('# escape=`\nCMD ["a\\\\b"]'), '(cmd "a\\\\b")');
  // Valid JSON with a non-string element is an error.
  for (const bad of ['CMD [1]', 'CMD ["a", null]', 'CMD [true]', 'CMD [{}]', 'CMD [["x"]]', 'RUN ["a", 1e5]']) {
    const e = refused(bad);
    assert.equal(e.message, 'when using JSON array syntax, arrays must be comprised of strings only', bad);
  }
  // An overflowing number anywhere makes it shell form, even next to a non-string.
  assert.equal(dump('CMD [1, 1e999]'), '(cmd "[1, 1e999]")');
  // Go refuses nesting deeper than 10000.
  assert.equal(dump('CMD ' + '['.repeat(10001) + ']'.repeat(10001)), '(cmd "' + '['.repeat(10001) + ']'.repeat(10001) + '")');
  assert.equal(refused('CMD ' + '['.repeat(10000) + ']'.repeat(10000)).message, 'when using JSON array syntax, arrays must be comprised of strings only');
});

test('ONBUILD nests a whole instruction', () => {
  assert.equal(dump('ONBUILD RUN ["echo", "test"]'), '(onbuild (run "echo" "test"))');
  assert.equal(dump('ONBUILD --x COPY --from=a . /'), '(onbuild ["--x"] (copy ["--from=a"] "." "/"))');
  assert.equal(dump('ONBUILD'), '(onbuild)');
  assert.equal(dump('ONBUILD ONBUILD RUN x'), '(onbuild (onbuild (run "x")))');
  const p = parseDockerfile('ONBUILD ADD a b');
  assert.equal(p.instructions[0]!.nested!.keyword, 'add');
  assert.deepEqual(p.instructions[0]!.nested!.args, ['a', 'b']);
  assert.equal(refused('ONBUILD ENV x').message, 'ENV must have two arguments');
});

test('line length limit and empty files', () => {
  const ok = 'LABEL a=' + 'x'.repeat(65535 - 8);
  assert.equal(parseDockerfile(`FROM x\n${ok}\n`).instructions.length, 2);
  assert.equal(parseDockerfile(`FROM x\n${ok}`).instructions.length, 2);
  const e = refused(`FROM x\n${ok}x\nRUN y\n`);
  assert.equal(e.message, 'dockerfile line greater than max allowed size of 65535');
  assert.equal(e.position?.line, 2);
  // The limit counts bytes, not characters.
  assert.equal(refused(`FROM x\nLABEL a=${'é'.repeat(32764)}`).message, 'dockerfile line greater than max allowed size of 65535');

  assert.equal(refused('').message, 'file with no instructions');
  const c = refused('# just\n\n# comments\n', 'my.Dockerfile');
  assert.equal(c.message, 'file with no instructions');
  assert.equal(c.where(), 'my.Dockerfile:3: file with no instructions');
});

test('positions of errors span the instruction', () => {
  const e = refused('FROM x\nRUN ok\nCMD [ \\\n  "a", \\\n  1 ]\n');
  assert.deepEqual(e.position, { file: 'Dockerfile', line: 3, endLine: 5 });
  assert.equal(e.where(), 'Dockerfile:3: when using JSON array syntax, arrays must be comprised of strings only');
  assert.equal(e.code, 'DOCKERFILE_PARSE');
});

test('raw bytes survive: invalid UTF-8 is kept and dumped as Go does', () => {
  const p = parseDockerfile(Buffer.from([...Buffer.from('RUN a'), 0x80, 0x41]));
  assert.equal(p.instructions[0]!.args[0], 'a\udc80A');
  assert.equal(dumpDockerfile(p), '(run "a\\x80A")');
  // In ENV words Go writes U+FFFD for an invalid byte.
  assert.equal(dump(Buffer.from([...Buffer.from('ENV a=b'), 0x80])), '(env "a" "b\ufffd" "=")');
});
