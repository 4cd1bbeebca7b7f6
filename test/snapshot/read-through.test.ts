// readThrough (src/snapshot/streams.ts): every byte of a blob hashed, copied and handed to its
// reader once; a registry's small chunks reach the copy and the reader joined into MiBs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readThrough } from '../../src/snapshot/streams.js';
import { tempDir } from './helpers.js';

test('readThrough joins small chunks into MiB pieces for the copy and the reader; the copy, the bytes read and the digest are the blob', async () => {
  const t = tempDir('read-through');
  try {
    const blob = randomBytes(200 * 10_000 + 17);
    const copy = join(t.dir, 'copy');
    const { feed, digest } = readThrough(
      async () =>
        (async function* () {
          for (let i = 0; i < blob.length; i += 10_000) yield blob.subarray(i, i + 10_000);
        })(),
      { copyTo: copy },
    );
    const ended = new Promise((r) => feed.once('end', r));
    const sizes: number[] = [];
    const got: Buffer[] = [];
    feed.on('data', (c: Buffer) => {
      sizes.push(c.length);
      got.push(c);
    });
    const d = await digest;
    await ended;
    assert.equal(d, `sha256:${createHash('sha256').update(blob).digest('hex')}`);
    assert.ok(Buffer.concat(got).equals(blob));
    assert.ok(readFileSync(copy).equals(blob));
    assert.ok(sizes.length <= 3, `${sizes.length} pieces: ${sizes.join(', ')}`);
    for (const s of sizes.slice(0, -1)) assert.ok(s >= 1 << 20, `a piece of ${s} bytes before the last`);
  } finally {
    t.cleanup();
  }
});
