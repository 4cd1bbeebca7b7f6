import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveUser } from '../../src/executor/user.js';
import { resolveInRoot } from '../../src/executor/rootpath.js';
import { tempDir, writeUsers } from './fixtures.js';

function rejectsWith(code: string, ...words: string[]) {
  return (e: unknown): boolean => {
    const err = e as { code?: string; message?: string };
    assert.equal(err.code, code);
    for (const w of words) assert.ok(err.message?.includes(w), `"${err.message}" should mention ${w}`);
    return true;
  };
}

describe('resolveUser', () => {
  let root: string;
  let bare: string;
  before(() => {
    root = tempDir('users');
    writeUsers(root);
    bare = tempDir('bare');
  });
  after(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(bare, { recursive: true, force: true });
  });

  it('resolves a name to its uid, gid and member groups', async () => {
    assert.deepEqual(await resolveUser(root, 'app'), { uid: 1234, gid: 1234, additionalGids: [5555, 6666] });
  });

  it('treats a numeric user as a uid and finds its entry', async () => {
    assert.deepEqual(await resolveUser(root, '1234'), { uid: 1234, gid: 1234, additionalGids: [5555, 6666] });
  });

  it('allows a numeric uid without an entry, with gid 0', async () => {
    assert.deepEqual(await resolveUser(root, '4321'), { uid: 4321, gid: 0, additionalGids: [] });
    assert.deepEqual(await resolveUser(bare, '4321'), { uid: 4321, gid: 0, additionalGids: [] });
  });

  it('defaults to root with root\'s member groups', async () => {
    assert.deepEqual(await resolveUser(root, ''), { uid: 0, gid: 0, additionalGids: [6666] });
    assert.deepEqual(await resolveUser(bare, ''), { uid: 0, gid: 0, additionalGids: [] });
  });

  it('takes uid:gid as is, without reading files', async () => {
    assert.deepEqual(await resolveUser(bare, '1000:2000'), { uid: 1000, gid: 2000, additionalGids: [] });
    assert.deepEqual(await resolveUser(bare, 'root:root'), { uid: 0, gid: 0, additionalGids: [] });
  });

  it('uses an explicit group (name or number) and drops supplementary groups', async () => {
    assert.deepEqual(await resolveUser(root, 'app:extra'), { uid: 1234, gid: 5555, additionalGids: [] });
    assert.deepEqual(await resolveUser(root, 'app:7777'), { uid: 1234, gid: 7777, additionalGids: [] });
    assert.deepEqual(await resolveUser(root, '1234:more'), { uid: 1234, gid: 6666, additionalGids: [] });
  });

  it('rejects an unknown name, naming the user and the file', async () => {
    await assert.rejects(resolveUser(root, 'nobody'), rejectsWith('UNKNOWN_USER', 'nobody', '/etc/passwd'));
    await assert.rejects(resolveUser(bare, 'app'), rejectsWith('UNKNOWN_USER', 'app', '/etc/passwd'));
  });

  it('rejects an unknown group name', async () => {
    await assert.rejects(resolveUser(root, 'app:nogroup'), rejectsWith('UNKNOWN_GROUP', 'nogroup', '/etc/group'));
  });

  it('rejects ids out of range', async () => {
    await assert.rejects(resolveUser(root, '99999999999'), rejectsWith('INVALID_USER', '99999999999'));
  });

  it('follows an absolute /etc/passwd symlink inside the rootfs, never to the host', async () => {
    const hostDir = tempDir('hostside');
    try {
      // The same absolute path exists on the host (with another user) and inside the rootfs.
      writeFileSync(join(hostDir, 'passwd'), 'hostonly:x:777:777::/:/bin/sh\n');
      const r = tempDir('linked');
      mkdirSync(join(r, 'etc'));
      mkdirSync(join(r, hostDir), { recursive: true });
      writeFileSync(join(r, hostDir, 'passwd'), 'inroot:x:888:889::/:/bin/sh\n');
      symlinkSync(join(hostDir, 'passwd'), join(r, 'etc', 'passwd'));
      assert.deepEqual(await resolveUser(r, 'inroot'), { uid: 888, gid: 889, additionalGids: [] });
      await assert.rejects(resolveUser(r, 'hostonly'), rejectsWith('UNKNOWN_USER', 'hostonly'));
      rmSync(r, { recursive: true, force: true });
    } finally {
      rmSync(hostDir, { recursive: true, force: true });
    }
  });

  it('clamps relative links that climb above the rootfs and follows a symlinked /etc', async () => {
    const r = tempDir('climb');
    try {
      mkdirSync(join(r, 'private', 'etc'), { recursive: true });
      writeFileSync(join(r, 'private', 'etc', 'pw'), 'climber:x:42:43::/:/bin/sh\n');
      symlinkSync('/private/etc', join(r, 'etc'));
      symlinkSync('../../../../../../../../private/etc/pw', join(r, 'private', 'etc', 'passwd'));
      assert.deepEqual(await resolveUser(r, 'climber'), { uid: 42, gid: 43, additionalGids: [] });
    } finally {
      rmSync(r, { recursive: true, force: true });
    }
  });
});

describe('resolveInRoot', () => {
  it('keeps missing components and resolves .. lexically at the root', async () => {
    const r = tempDir('rip');
    try {
      mkdirSync(join(r, 'a'));
      symlinkSync('/a', join(r, 'link'));
      assert.equal(await resolveInRoot(r, '/link/x/y'), join(r, 'a', 'x', 'y'));
      assert.equal(await resolveInRoot(r, '/../../link/../b'), join(r, 'b'));
      assert.equal(await resolveInRoot(r, '/'), r);
    } finally {
      rmSync(r, { recursive: true, force: true });
    }
  });

  it('reports a symlink loop', async () => {
    const r = tempDir('loop');
    try {
      symlinkSync('/b', join(r, 'a'));
      symlinkSync('/a', join(r, 'b'));
      await assert.rejects(resolveInRoot(r, '/a/x'), rejectsWith('SYMLINK_LOOP'));
    } finally {
      rmSync(r, { recursive: true, force: true });
    }
  });
});
