// The Go behaviours the parser reproduces: strconv.Quote, json.Unmarshal into []any, time.ParseDuration,
// UTF-8 decoding, unicode.IsSpace, strings.ToLower, regexp.Split on blank runs, and the byte strings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { goQuote } from '../../src/dockerfile/go-quote.js';
import { parseJsonStringArray } from '../../src/dockerfile/go-json.js';
import { parseCacheTtl, parseGoDuration } from '../../src/dockerfile/go-duration.js';
import {
  decodeRune,
  fromByteString,
  goToLower,
  rawStringToBuffer,
  toByteString,
  trimSpace,
} from '../../src/dockerfile/bytes.js';
import { splitBlankRuns } from '../../src/dockerfile/split-command.js';

test('strconv.Quote', () => {
  assert.equal(goQuote('abc 123'), '"abc 123"');
  assert.equal(goQuote('♥ ☃ 한국어'), '"♥ ☃ 한국어"');
  assert.equal(goQuote('" \\ \b \f \n \r \t \v \x07 \x00 \x7f'), '"\\" \\\\ \\b \\f \\n \\r \\t \\v \\a \\x00 \\x7f"');
  assert.equal(goQuote('\u00a0\u00ad\u2028\ufeff'), '"\\u00a0\\u00ad\\u2028\\ufeff"');
  assert.equal(goQuote('\u{e0001}\u{1f600}'), '"\\U000e0001😀"');
  assert.equal(goQuote('\ufffd'), '"\ufffd"');
  // A raw byte that was not UTF-8 (carried as U+DC80..U+DCFF).
  assert.equal(goQuote('a\udcff'), '"a\\xff"');
});

test('json.Unmarshal into []any', () => {
  const j = (s: string) => parseJsonStringArray(toByteString(s));
  assert.deepEqual(j('["a", "b"]'), { kind: 'strings', values: ['a', 'b'] });
  assert.deepEqual(j(' [ ] '), { kind: 'strings', values: [] });
  assert.deepEqual(j('["\\u0041\\n"]'), { kind: 'strings', values: ['A\n'] });
  assert.deepEqual(j('["a", {"k": [1, true, null]}]'), { kind: 'not-strings' });
  assert.deepEqual(j('[-0.5e-3]'), { kind: 'not-strings' });
  assert.deepEqual(j('[1e-999]'), { kind: 'not-strings' }); // underflow is fine in Go
  for (const bad of ['[1e999]', '[-1e400]', '["a",]', '[,]', '["a"', '["\t"]', '[01]', '[1.]', '[.5]', '[-]', '[nul]', '["\\x"]', '["\\u12"]', '[] x', '{"a":1}', '[{"a" 1}]', '[{1:2}]']) {
    assert.deepEqual(j(bad), { kind: 'invalid' }, bad);
  }
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  assert.deepEqual(j(deep(10000)), { kind: 'not-strings' });
  assert.deepEqual(j(deep(10001)), { kind: 'invalid' });
  // Surrogates: a valid pair joins; anything else is U+FFFD.
  const one = (s: string): string => {
    const r = j(s);
    assert.equal(r.kind, 'strings');
    return r.kind === 'strings' ? fromByteString(r.values[0]!) : '';
  };
  assert.equal(one('["\\ud83d\\ude00"]'), '😀');
  assert.equal(one('["\\ude00"]'), '\ufffd');
  assert.equal(one('["\\ud83dx"]'), '\ufffdx');
  assert.equal(one('["\\ud83d\\ud83d\\ude00"]'), '\ufffd😀');
});

test('time.ParseDuration', () => {
  assert.equal(parseGoDuration('1h30m'), 5400n * 1000000000n);
  assert.equal(parseGoDuration('1.5s'), 1500000000n);
  assert.equal(parseGoDuration('.5ms'), 500000n);
  assert.equal(parseGoDuration('0'), 0n);
  assert.equal(parseGoDuration('-2us'), -2000n);
  assert.equal(parseGoDuration('3µs'), 3000n);
  assert.throws(() => parseGoDuration(''), /^Error: time: invalid duration ""$/);
  assert.throws(() => parseGoDuration('1'), /time: missing unit in duration "1"/);
  assert.throws(() => parseGoDuration('1d'), /time: unknown unit "d" in duration "1d"/);
  assert.throws(() => parseGoDuration('.s'), /time: invalid duration ".s"/);
  assert.throws(() => parseGoDuration('9999999999h'), /time: invalid duration/);
  assert.equal(parseCacheTtl('7d'), 7 * 24 * 3600 * 1000);
  assert.equal(parseCacheTtl('90m'), 90 * 60 * 1000);
  assert.throws(() => parseCacheTtl('0s'), /must be positive/);
});

test('UTF-8, whitespace, lower-casing and blank-run splitting as Go does', () => {
  const b = toByteString('é€😀');
  assert.deepEqual(decodeRune(b, 0), [0xe9, 2]);
  assert.deepEqual(decodeRune(b, 2), [0x20ac, 3]);
  assert.deepEqual(decodeRune(b, 5), [0x1f600, 4]);
  assert.deepEqual(decodeRune('\xed\xa0\x80', 0), [0xfffd, 1]); // encoded surrogate
  assert.deepEqual(decodeRune('\xc0\x80', 0), [0xfffd, 1]); // overlong
  assert.equal(fromByteString(toByteString('\u0085x\u00a0\u3000')), '\u0085x\u00a0\u3000');
  assert.equal(fromByteString(trimSpace(toByteString('\u0085\u2000 x \u00a0\u3000'))), 'x');
  assert.equal(trimSpace('\xa0x\xa0'), '\xa0x\xa0'); // a lone 0xA0 byte is not NBSP
  assert.equal(fromByteString(goToLower(toByteString('İSTANBUL ΣΑΣ'))), 'istanbul σασ');
  assert.equal(goToLower('A\xffB'), 'a\xef\xbf\xbdb');
  assert.deepEqual(splitBlankRuns('a \t\v\f\rb\u00a0c', -1), ['a', 'b\u00a0c']);
  assert.deepEqual(splitBlankRuns('a b c', 2), ['a', 'b c']);
  assert.deepEqual(splitBlankRuns(' a ', -1), ['', 'a', '']);
  assert.deepEqual(splitBlankRuns('', 2), ['']);
  // Raw bytes round-trip through ordinary strings.
  const raw = Buffer.from([0x61, 0x80, 0xc3, 0xa9, 0xff]);
  const s = fromByteString(raw.toString('latin1'));
  assert.equal(s, 'a\udc80é\udcff');
  assert.deepEqual(rawStringToBuffer(s), raw);
});
