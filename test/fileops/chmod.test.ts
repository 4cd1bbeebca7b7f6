import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseChmod } from '../../src/fileops/chmod.js';
import { isStrataError } from '../../src/errors.js';

describe('parseChmod', () => {
  it('takes octal modes up to 07777', () => {
    assert.equal(parseChmod('755').apply(0o600, false), 0o755);
    assert.equal(parseChmod('0644').apply(0o777, true), 0o644);
    assert.equal(parseChmod('7777').apply(0, false), 0o7777);
    assert.equal(parseChmod('0').apply(0o755, false), 0);
    assert.equal(parseChmod('750').octal, 0o750);
  });

  it('rejects non-octal and out-of-range numbers with BuildKit wording', () => {
    for (const bad of ['8', '0799', '10000', '12a']) {
      assert.throws(() => parseChmod(bad), (e: unknown) => isStrataError(e) && e.code === 'COPY_BAD_CHMOD' && /it should be octal string and between 0 and 07777/.test(e.message), bad);
    }
  });

  it('applies symbolic modes like chmod(1)', () => {
    const cases: [string, number, boolean, number][] = [
      ['u+x', 0o644, false, 0o744],
      ['go-w', 0o666, false, 0o644],
      ['a+r', 0o200, false, 0o644],
      ['+x', 0o644, false, 0o755],
      ['u=rwx,go=rx', 0o600, false, 0o755],
      ['go=', 0o777, false, 0o700],
      ['g=u', 0o640, false, 0o660],
      ['go=u-w', 0o700, false, 0o755],
      ['u+x,g-w', 0o664, false, 0o744],
      ['o-rwx', 0o777, true, 0o770],
      ['+X', 0o644, false, 0o644],
      ['+X', 0o644, true, 0o755],
      ['+X', 0o744, false, 0o755],
      ['=rw,+X', 0o766, false, 0o777],
      ['u+s', 0o755, false, 0o4755],
      ['g+s', 0o755, true, 0o2755],
      ['+t', 0o777, true, 0o1777],
      ['o+s', 0o755, false, 0o755],
      ['u-s', 0o4755, false, 0o755],
      ['u+r-w', 0o200, false, 0o400],
    ];
    for (const [text, from, isDir, want] of cases) {
      assert.equal(parseChmod(text).apply(from, isDir).toString(8), want.toString(8), `${text} on ${from.toString(8)}${isDir ? ' (dir)' : ''}`);
    }
  });

  it('rejects malformed symbolic modes', () => {
    for (const bad of ['', 'u', 'x+', 'u+q', 'u+x,', 'z=r']) {
      assert.throws(() => parseChmod(bad), (e: unknown) => isStrataError(e) && e.code === 'COPY_BAD_CHMOD', JSON.stringify(bad));
    }
  });
});
