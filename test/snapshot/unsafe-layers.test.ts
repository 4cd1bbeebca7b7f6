// Layers crafted to write outside their directory must be refused with nothing written outside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { extractLayer } from '../../src/snapshot/extract.js';
import { isStrataError } from '../../src/errors.js';
import { buildTar, isRoot, streamOf, tempDir, type TarSpec } from './helpers.js';

const skip = !isRoot && 'needs root';

function fingerprint(p: string): string {
  const st = lstatSync(p);
  return `${st.ino}:${st.nlink}:${st.mode}:${st.mtimeMs}:${st.ctimeMs}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
}

/** Everything below dir, as a sorted listing (to prove nothing appeared). */
function listing(dir: string): string[] {
  const out: string[] = [];
  const visit = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      out.push(r);
      if (lstatSync(join(dir, r)).isDirectory()) visit(r);
    }
  };
  visit('');
  return out.sort();
}

async function refuse(specs: (outside: string) => TarSpec[], entryPattern: RegExp): Promise<void> {
  const t = tempDir('unsafe');
  try {
    // layout: T/outside (a sentinel dir a layer would like to reach), T/deep/dest (the layer dir)
    const outside = join(t.dir, 'outside');
    mkdirSync(outside);
    mkdirSync(join(t.dir, 'deep'));
    const dest = join(t.dir, 'deep', 'dest');
    const passwd = fingerprint('/etc/passwd');
    const rootBefore = readdirSync('/').sort();
    const tBefore = listing(t.dir);
    const label = `sha256:${'ab12'.repeat(16)}`;
    const tar = await buildTar([{ name: 'ok', data: 'fine' }, ...specs(outside)]);
    await assert.rejects(extractLayer(streamOf(tar), dest, { label }), (e: unknown) => {
      assert.ok(isStrataError(e), String(e));
      assert.equal(e.code, 'UNSAFE_LAYER');
      assert.ok(e.message.startsWith('layer sha256:ab12ab12ab12…: entry "'), e.message);
      assert.match(e.message, entryPattern);
      return true;
    });
    assert.equal(existsSync(dest), false, 'the partial layer dir is removed');
    assert.deepEqual(listing(t.dir), tBefore.filter((p) => !p.startsWith('deep/dest')));
    assert.equal(fingerprint('/etc/passwd'), passwd);
    assert.deepEqual(readdirSync('/').sort(), rootBefore);
  } finally {
    t.cleanup();
  }
}

test('refuses ../x', { skip }, async () => {
  await refuse(() => [{ name: '../x', data: 'escape' }], /entry "\.\.\/x" would be written outside the root filesystem/);
});

test('refuses /abs/../../x', { skip }, async () => {
  await refuse(() => [{ name: '/abs/../../x', data: 'escape' }], /entry "\/abs\/\.\.\/\.\.\/x" would be written outside/);
});

test('refuses ../ hidden in the middle of a path', { skip }, async () => {
  await refuse(() => [{ name: 'a/b/../../../outside/x', data: 'escape' }], /outside the root filesystem/);
});

test('refuses a hard link to ../../etc/passwd', { skip }, async () => {
  await refuse(() => [{ name: 'passwd', type: 'link', linkname: '../../etc/passwd' }], /entry "passwd" is a hard link to "\.\.\/\.\.\/etc\/passwd", outside the root filesystem/);
});

test('refuses writing through a symlink to /etc', { skip }, async () => {
  await refuse(
    () => [
      { name: 'a', type: 'symlink', linkname: '/etc' },
      { name: 'a/passwd', data: 'root::0:0::/:/bin/sh\n' },
    ],
    /entry "a\/passwd" would be written through the symbolic link "a"/,
  );
});

test('refuses writing through a symlink to ../../..', { skip }, async () => {
  await refuse(
    () => [
      { name: 'a', type: 'symlink', linkname: '../../..' },
      { name: 'a/x', data: 'escape' },
    ],
    /entry "a\/x" would be written through the symbolic link "a"/,
  );
});

test('refuses a directory and a file below a symlinked parent chain', { skip }, async () => {
  await refuse(
    (outside) => [
      { name: 'd/', type: 'directory' },
      { name: 'd/link', type: 'symlink', linkname: outside },
      { name: 'd/link/sub/', type: 'directory' },
      { name: 'd/link/sub/x', data: 'escape' },
    ],
    /entry "d\/link\/sub\/" would be written through the symbolic link "d\/link"/,
  );
});

test('refuses a whiteout and an opaque marker below a symlink', { skip }, async () => {
  await refuse(
    (outside) => [
      { name: 'a', type: 'symlink', linkname: outside },
      { name: 'a/.wh.victim', data: '' },
    ],
    /entry "a\/\.wh\.victim" would be written through the symbolic link "a"/,
  );
  await refuse(
    (outside) => [
      { name: 'a', type: 'symlink', linkname: outside },
      { name: 'a/.wh..wh..opq', data: '' },
    ],
    /through the symbolic link "a"/,
  );
});

test('refuses a hard link whose target goes through a symlink', { skip }, async () => {
  await refuse(
    () => [
      { name: 'etc', type: 'symlink', linkname: '/etc' },
      { name: 'stolen', type: 'link', linkname: 'etc/passwd' },
    ],
    /entry "stolen" is a hard link through the symbolic link "etc"/,
  );
});

test('refuses a whiteout naming ..', { skip }, async () => {
  await refuse(() => [{ name: 'sub/.wh...', data: '' }], /whiteout for a path outside its directory/);
});

test('keeps symlinks pointing anywhere, without following them', { skip }, async () => {
  const t = tempDir('symlinks');
  try {
    const dest = join(t.dir, 'dest');
    const tar = await buildTar([
      { name: 'abs', type: 'symlink', linkname: '/etc/passwd' },
      { name: 'up', type: 'symlink', linkname: '../../../../etc' },
      { name: 'dotdot', type: 'symlink', linkname: '..' },
      { name: 'rel', type: 'symlink', linkname: 'abs' },
      { name: 'hard', type: 'link', linkname: 'abs' },
    ]);
    const passwd = fingerprint('/etc/passwd');
    await extractLayer(streamOf(tar), dest, { label: 'links' });
    assert.equal(readlinkSync(join(dest, 'abs')), '/etc/passwd');
    assert.equal(readlinkSync(join(dest, 'up')), '../../../../etc');
    assert.equal(readlinkSync(join(dest, 'dotdot')), '..');
    assert.equal(readlinkSync(join(dest, 'rel')), 'abs');
    // a hard link to a symlink is a second name of the link itself
    assert.equal(readlinkSync(join(dest, 'hard')), '/etc/passwd');
    assert.equal(lstatSync(join(dest, 'hard')).ino, lstatSync(join(dest, 'abs')).ino);
    assert.equal(fingerprint('/etc/passwd'), passwd);
  } finally {
    t.cleanup();
  }
});

test('refuses an entry that replaces a symlink of the same layer', { skip }, async () => {
  const t = tempDir('symlinks');
  try {
    const dest = join(t.dir, 'dest');
    const tar = await buildTar([
      { name: 'abs', type: 'symlink', linkname: '/etc/passwd' },
      { name: 'abs', data: 'replaced' },
    ]);
    const passwd = fingerprint('/etc/passwd');
    await assert.rejects(extractLayer(streamOf(tar), dest, { label: 'dup' }), (e: unknown) => {
      assert.ok(isStrataError(e));
      assert.equal(e.code, 'BAD_LAYER');
      assert.match(e.message, /entry "abs" replaces a symbolic link/);
      return true;
    });
    assert.equal(existsSync(dest), false);
    assert.equal(fingerprint('/etc/passwd'), passwd);
  } finally {
    t.cleanup();
  }
});
