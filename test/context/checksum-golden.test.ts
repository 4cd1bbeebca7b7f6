// Context checksums are cache keys: the same files must give the same digest across strata
// versions, or every store's records stop hitting. The digests below are what 9835eb4 computed for
// this tree; a change to how lines are built or hashed that moves any of them breaks existing stores.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { setAttributeSync } from 'fs-xattr';
import { checksumRootfsSources, checksumSources, checksumSourcesUnlessUnchanged, MemoryStatCache, type ChecksumOptions } from '../../src/context/checksum.js';

let root: string;

before(() => {
  root = join(mkdtempSync(join(os.tmpdir(), 'strata-golden-')), 'tree');
  const files: Record<string, string | Buffer> = {
    'a.txt': 'alpha\n',
    empty: '',
    'dir/b.js': 'export const b = 1;\n',
    'dir/sub/c.bin': Buffer.alloc(300 * 1024, 3),
    'dir/we"ird \\name\u00e9.txt': 'odd\n',
    'dir/sub/d.txt': 'delta\n',
    'other/x.txt': 'x\n',
  };
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), content);
    chmodSync(join(root, rel), 0o644);
  }
  chmodSync(join(root, 'dir/b.js'), 0o4755);
  for (const d of ['dir', 'other']) chmodSync(join(root, d), 0o755);
  chmodSync(join(root, 'dir/sub'), 0o750);
  symlinkSync('../a.txt', join(root, 'dir/link'));
  linkSync(join(root, 'dir/sub/d.txt'), join(root, 'dir/hard.txt'));
  execFileSync('mkfifo', [join(root, 'dir/fifo')]);
  chmodSync(join(root, 'dir/fifo'), 0o600);
});
after(() => rmSync(join(root, '..'), { recursive: true, force: true }));

const ignore = (rel: string): boolean => rel === 'other/x.txt';

const CONTEXT: [Partial<ChecksumOptions>, string][] = [
  [{ sources: ['.'] }, 'sha256:b656a55cab69c543f4dcc6ed59ba89b4d79c4711667d7df91d654bfb5fe30a25'],
  [{ sources: ['dir', 'a.txt'] }, 'sha256:02a4d574aeef3e253a5ae7bbb61e1dbb268104e4bf06d7118f13c0b1d69dba47'],
  [{ sources: ['dir/*.txt', 'other'] }, 'sha256:5a87105f07e02fcdab6b15ba433b5a34728dbe637becf0043a1050b82c050fb6'],
  [{ sources: ['.'], excludes: ['**/*.bin'] }, 'sha256:f925ce0d1bcfe1eb783be638b1591fdf852b0a56eeae14062fec9d8a68851a2d'],
  [{ sources: ['dir/./sub'], parents: true }, 'sha256:b6d9dadb288b1cbbd545fb4fdb94a832444be6332596f6059d1777f0f9874d61'],
  [{ sources: ['dir/link'], followSymlinks: false }, 'sha256:969e755d53964fe99ed97051976d4c7cd590b5b27a994665b89b807f2679ad18'],
];

describe('context checksums keep their digests', () => {
  it('for files, dirs, modes, a symlink, a hard link, a fifo, odd names, wildcards, excludes and --parents', async () => {
    const cache = new MemoryStatCache();
    for (const [o, digest] of CONTEXT) {
      const what = JSON.stringify(o);
      assert.equal((await checksumSources({ root, ignore, sources: [], ...o })).digest, digest, what);
      // Cold and warm stat cache, and a recorded selection, give the same digest.
      assert.equal((await checksumSources({ root, ignore, sources: [], statCache: cache, ...o })).digest, digest, `${what} via the stat cache`);
      assert.equal((await checksumSourcesUnlessUnchanged({ root, ignore, sources: [], statCache: cache, ...o })).digest, digest, `${what} unless unchanged`);
    }
  });

  it('for a rootfs selection with owners and xattrs', async () => {
    execFileSync('chown', ['-R', '1000:1001', join(root, 'dir')]);
    setAttributeSync(join(root, 'dir/b.js'), 'user.golden', Buffer.from('v1'));
    assert.equal((await checksumRootfsSources({ root, sources: ['dir'] })).digest, 'sha256:f29731a7c62627fc08dee5bc397f2f65924596e318e8bb52b02ea2314b7bce17');
  });
});
