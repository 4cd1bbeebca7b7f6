import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { resolveInRoot } from '../../src/fileops/resolve.js';
import { isStrataError } from '../../src/errors.js';
import { tmpdir } from './helpers.js';

let root: string;

before(async () => {
  root = await tmpdir('strata-resolve-');
  await fsp.mkdir(path.join(root, 'opt/app'), { recursive: true });
  await fsp.mkdir(path.join(root, 'usr/lib'), { recursive: true });
  await fsp.symlink('/opt/app', path.join(root, 'app'));
  await fsp.symlink('usr/lib', path.join(root, 'lib'));
  await fsp.symlink('../../../../..', path.join(root, 'usr/up'));
  await fsp.symlink('/etc/shadow', path.join(root, 'shadow'));
  await fsp.symlink('loop2', path.join(root, 'loop1'));
  await fsp.symlink('loop1', path.join(root, 'loop2'));
  await fsp.symlink('/missing/dir', path.join(root, 'dangling'));
});

after(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('resolveInRoot', () => {
  it('follows absolute links relative to the root', async () => {
    assert.equal(await resolveInRoot(root, '/app/file'), path.join(root, 'opt/app/file'));
    assert.equal(await resolveInRoot(root, 'app'), path.join(root, 'opt/app'));
    assert.equal(await resolveInRoot(root, '/shadow'), path.join(root, 'etc/shadow'));
  });

  it('follows relative links and clamps .. at the root', async () => {
    assert.equal(await resolveInRoot(root, '/lib/x.so'), path.join(root, 'usr/lib/x.so'));
    assert.equal(await resolveInRoot(root, '/usr/up/etc/passwd'), path.join(root, 'etc/passwd'));
    assert.equal(await resolveInRoot(root, '/../../etc'), path.join(root, 'etc'));
    assert.equal(await resolveInRoot(root, '/'), root);
    assert.equal(await resolveInRoot(root, ''), root);
  });

  it('appends missing components and follows dangling links inside the root', async () => {
    assert.equal(await resolveInRoot(root, '/new/a/b'), path.join(root, 'new/a/b'));
    assert.equal(await resolveInRoot(root, '/dangling/f'), path.join(root, 'missing/dir/f'));
  });

  it('can leave the last component unresolved', async () => {
    assert.equal(await resolveInRoot(root, '/app', { followFinal: false }), path.join(root, 'app'));
    assert.equal(await resolveInRoot(root, '/app/x', { followFinal: false }), path.join(root, 'opt/app/x'));
  });

  it('stops symlink loops', async () => {
    await assert.rejects(resolveInRoot(root, '/loop1/x'), (e: unknown) => isStrataError(e) && e.code === 'COPY_SYMLINK_LOOP');
  });
});
