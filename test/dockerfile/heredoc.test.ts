// Heredocs: which words start one, their names, quoting, `<<-`, file descriptors, several per line,
// bodies consumed (and never parsed as instructions), unterminated ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../../src/dockerfile/parser.js';
import { dumpDockerfile } from '../../src/dockerfile/dump.js';
import { heredocsFromLine, parseHeredocWord } from '../../src/dockerfile/heredoc.js';
import { fromByteString, toByteString } from '../../src/dockerfile/bytes.js';
import type { Heredoc } from '../../src/dockerfile/ast.js';
import { StrataError } from '../../src/errors.js';

function docs(text: string): Heredoc[][] {
  return parseDockerfile(text).instructions.map((i) =>
    i.heredocs.map((h) => ({ name: h.name, content: h.content, expand: h.expand, chomp: h.chomp, fileDescriptor: h.fileDescriptor })),
  );
}

const h = (name: string, content: string, more: Partial<Heredoc> = {}): Heredoc => ({
  name,
  content,
  expand: true,
  chomp: false,
  fileDescriptor: 0,
  ...more,
});

test('bodies are read up to the terminator line and not parsed', () => {
  const text = 'FROM x\nRUN <<EOF\nFROM not-an-instruction\n# not a comment\nEOF\nRUN ls\n';
  const p = parseDockerfile(text);
  assert.equal(dumpDockerfile(p), '(from "x")\n(run "<<EOF")\n(run "ls")');
  assert.deepEqual(docs(text)[1], [h('EOF', 'FROM not-an-instruction\n# not a comment\n')]);
  assert.deepEqual(
    p.instructions.map((i) => [i.startLine, i.endLine]),
    [
      [1, 1],
      [2, 5],
      [6, 6],
    ],
  );
});

test('names, quoting and expansion', () => {
  const cases: Array<[string, Heredoc]> = [
    ['RUN <<E1\nE1', h('E1', '')],
    ['RUN 3<<E2\nE2', h('E2', '', { fileDescriptor: 3 })],
    ["RUN <<'Q1'\n$X\nQ1", h('Q1', '$X\n', { expand: false })],
    ['RUN <<"Q2"\nQ2', h('Q2', '', { expand: false })],
    ["RUN <<ab'c'\nabc", h('abc', '', { expand: false })],
    ["RUN <<ab\\'c\nab'c", h("ab'c", '')],
    ["RUN <<'a'b\\'c\nab'c", h("ab'c", '', { expand: false })],
    ["RUN <<'one two'\none two", h('one two', '', { expand: false })],
    ['RUN <<$EOF\n$EOF', h('$EOF', '')],
    ['RUN <<  EOF\nEOF', h('EOF', '')],
    ['RUN <<  EOF  > out\nEOF', h('EOF', '')],
    ['RUN <<EOF|sh\nEOF|sh', h('EOF|sh', '')],
    ['RUN <<COMPLEX python3\nprint(1)\nCOMPLEX', h('COMPLEX', 'print(1)\n')],
    ['COPY <<file.txt /dest\nhi\nfile.txt', h('file.txt', 'hi\n')],
  ];
  for (const [text, want] of cases) assert.deepEqual(docs('FROM x\n' + text)[1], [want], text);
});

test('<<- strips leading tabs from the body and the terminator', () => {
  const text = 'FROM x\nRUN <<-EOF\n\tfoo\n\t\tbar\n\tEOF\n';
  assert.deepEqual(docs(text)[1], [h('EOF', 'foo\nbar\n', { chomp: true })]);
  const raw = parseDockerfile(text).instructions[1]!.heredocs[0]!;
  assert.equal(raw.rawContent, '\tfoo\n\t\tbar\n');
  // Without `-` the tabs stay and an indented terminator does not end the body.
  assert.deepEqual(docs('FROM x\nRUN <<EOF\n\tfoo\n\tEOF\nEOF\n')[1], [h('EOF', '\tfoo\n\tEOF\n')]);
});

test('several heredocs on one line, read in order', () => {
  const text = 'FROM x\nCOPY <<A 3<<-B /dest\nB\nA\n\tb\n\tB\n';
  assert.deepEqual(docs(text)[1], [h('A', 'B\n'), h('B', 'b\n', { chomp: true, fileDescriptor: 3 })]);
  assert.equal(dumpDockerfile(parseDockerfile(text)), '(from "x")\n(copy "<<A" "3<<-B" "/dest")');
});

test('only RUN, COPY, ADD (also under ONBUILD), never in JSON form or quotes', () => {
  assert.deepEqual(docs('FROM x\nUSER <<INVALID\nINVALID')[1], []);
  assert.equal(parseDockerfile('FROM x\nUSER <<INVALID\nINVALID').instructions.length, 3);
  assert.deepEqual(docs('FROM x\nRUN ["<<EOF"]\nRUN "<<NO"\nRUN \'<<NO\'')[1], []);
  assert.deepEqual(docs('FROM x\nONBUILD RUN <<EOF\nhi\nEOF')[1], [h('EOF', 'hi\n')]);
  assert.deepEqual(docs('FROM x\nADD <<EOF /a\nhi\nEOF')[1], [h('EOF', 'hi\n')]);
  // `<<EOF sh` as one word (quoted) is not a marker.
  assert.deepEqual(docs('FROM x\nRUN echo "<<EOF sh"')[1], []);
});

test('an unterminated heredoc is an error at the instruction', () => {
  let err: unknown;
  try {
    parseDockerfile('FROM x\nRUN R --vanilla << "install.packages(1); q();"\n\nRUN more\n');
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof StrataError);
  assert.equal(err.message, 'unterminated heredoc');
  assert.equal(err.position?.line, 2);
});

test('heredoc word detection (ParseHeredoc)', () => {
  const name = (w: string): string | null => {
    const m = parseHeredocWord(toByteString(w));
    return m ? fromByteString(m.name) : null;
  };
  for (const w of ['<<EOF', "<<'EOF'", '<<"EOF"', '<<-EOF', "<<-'EOF'", '<<-"EOF"', '<<EO"F"', '<< EOF', '<<- EOF']) {
    assert.equal(name(w), 'EOF', w);
  }
  for (const w of ['', 'EOF', '<<', '<<-', '<EOF', '<<<EOF', '<<EOF sh']) assert.equal(name(w), null, w);
  for (const w of ["<<'EOF", '<<"EOF', "<<EOF'", '<<EOF"']) {
    assert.throws(() => parseHeredocWord(toByteString(w)), /failed to process/, w);
  }
});

test('heredocs of a line (heredocsFromLine)', () => {
  const names = (line: string): string[] => heredocsFromLine(toByteString(line)).map((m) => fromByteString(m.name));
  assert.deepEqual(names('RUN <<EOF'), ['EOF']);
  // The lexer keeps blanks after `<<` but not after `<<-`: `<<-` and `EOF` are two words, no marker
  // (BuildKit's own table expects EOF here, but its loop runs over no results and cannot notice).
  assert.deepEqual(names('RUN <<- EOF'), []);
  assert.deepEqual(names('RUN << -EOF'), ['-EOF']);
  assert.deepEqual(names("RUN <<'EOF'"), ['EOF']);
  assert.deepEqual(names('RUN 4<<EOF'), ['EOF']);
  assert.deepEqual(names('RUN <<EOF <<EOF2'), ['EOF', 'EOF2']);
  assert.deepEqual(names("RUN '<<EOF'"), []);
  assert.deepEqual(names('RUN "<<EOF"'), []);
  // A lexing error anywhere on the line means no heredocs at all (BuildKit ignores that error).
  assert.deepEqual(names("RUN cat <<EOF it's"), []);
});

test('a heredoc body keeps CRLF line ends', () => {
  assert.deepEqual(docs('FROM x\r\nRUN <<EOF\r\na\r\nEOF\r\n')[1], [h('EOF', 'a\r\n')]);
});
