import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeHeader, writeHeader, decodeHeader, type TarHeader } from '../../src/snapshot/tar-format.js';

function header(over: Partial<TarHeader>): TarHeader {
  return { name: 'a/b', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1700000000, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...over };
}

const plain: TarHeader[] = [
  header({}),
  header({ name: 'dir', type: 'dir', mode: 0o40755 & 0o7777 }),
  header({ name: 'dir/', type: 'dir' }),
  header({ size: 123456789, mode: 0o4755, uid: 1000, gid: 100 }),
  header({ size: 8 ** 11 - 1, uid: 8 ** 7 - 1, gid: 8 ** 7 - 1, mtime: 8 ** 11 - 1 }),
  header({ mtime: 0 }),
  header({ type: 'symlink', linkname: 'x'.repeat(100) }),
  header({ type: 'link', linkname: 'a/c' }),
  header({ type: 'char', devmajor: 1, devminor: 3, mode: 0o666 }),
  header({ type: 'block', devmajor: 8, devminor: 8 ** 7 }),
  header({ type: 'fifo' }),
  header({ name: 'n'.repeat(100) }),
  header({ name: `${'p'.repeat(150)}/${'n'.repeat(100)}` }),
  header({ name: 'caf\u00e9/\u00ff' }),
];

const needPax: TarHeader[] = [
  header({ xattrs: new Map([['user.x', Buffer.from([0, 1, 255])]]) }),
  header({ name: 'n'.repeat(101) }),
  header({ name: `${'p'.repeat(156)}/n` }),
  header({ type: 'symlink', linkname: 'x'.repeat(101) }),
  header({ mtime: 1700000000.5 }),
  header({ mtime: -1 }),
  header({ mtime: 8 ** 11 }),
  header({ uid: 8 ** 7 }),
  header({ gid: 3000001 }),
  header({ size: 8 ** 11 }),
];

test('writeHeader writes the block encodeHeader makes, at any offset, over dirty bytes', () => {
  for (const h of plain) {
    const want = encodeHeader(h);
    assert.equal(want.length, 512, `${h.name} needs no pax records`);
    const buf = Buffer.alloc(2048, 0xaa);
    assert.equal(writeHeader(h, buf, 700), 512);
    assert.deepEqual(buf.subarray(700, 1212), want, h.name);
    // nothing outside its block changes
    assert.ok(buf.subarray(0, 700).every((b) => b === 0xaa));
    assert.ok(buf.subarray(1212).every((b) => b === 0xaa));
    assert.equal(decodeHeader(buf.subarray(700, 1212)).size, h.type === 'file' ? h.size : 0);
  }
});

test('writeHeader declines entries that need pax records and writes nothing', () => {
  for (const h of needPax) {
    assert.ok(encodeHeader(h).length > 512, `${h.name} needs pax records`);
    const buf = Buffer.alloc(1024, 0xaa);
    assert.equal(writeHeader(h, buf, 0), 0);
    assert.ok(buf.every((b) => b === 0xaa));
  }
});
