// How layer images are mounted (src/snapshot/layer-mount.ts): straight from the image file where
// the kernel has EROFS file-backed mounts (no loop device, whose setup writes the freshly written
// image back to the disk first), through mount(8) and a loop device otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { layerImageSupport, writeLayerImage } from '../../src/snapshot/layer-image.js';
import { mountLayerImage, unmountLayerImages } from '../../src/snapshot/layer-mount.js';
import { buildTar, isRoot, streamOf, tempDir } from './helpers.js';

const skip = !isRoot ? 'needs root' : !layerImageSupport() ? 'needs EROFS in the kernel' : false;

/** The mount source (as /proc/self/mountinfo gives it) of the mount at `dir`. */
function mountSource(dir: string): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] !== dir) continue;
    const sep = f.indexOf('-');
    return f[sep + 2];
  }
  return undefined;
}

/** File-backed EROFS mounts came with Linux 6.12 (CONFIG_EROFS_FS_BACKED_BY_FILE). */
function kernelAtLeast(major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(readFileSync('/proc/sys/kernel/osrelease', 'utf8'));
  return !!m && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor));
}

async function withImage(fn: (image: string, at: string) => Promise<void>): Promise<void> {
  const t = tempDir('layer-mount');
  try {
    const tar = await buildTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hello', data: 'hello from the image' },
    ]);
    const image = join(t.dir, 'layer.erofs');
    await writeLayerImage(streamOf(tar), image, { label: 'mount' });
    await fn(image, join(t.dir, 'mnt'));
  } finally {
    t.cleanup();
  }
}

test('an image is mounted from its file, without a loop device, where the kernel can', { skip: skip || (!kernelAtLeast(6, 12) && 'needs Linux 6.12+') }, async () => {
  await withImage(async (image, at) => {
    await mountLayerImage(image, at);
    try {
      assert.equal(mountSource(at), image);
      assert.equal(readFileSync(join(at, 'etc/hello'), 'utf8'), 'hello from the image');
    } finally {
      await unmountLayerImages([at]);
    }
    assert.equal(mountSource(at), undefined);
  });
});

test('STRATA_EROFS_FILE_MOUNT=0 mounts through mount(8) and a loop device, with the same files', { skip }, async () => {
  const saved = process.env.STRATA_EROFS_FILE_MOUNT;
  process.env.STRATA_EROFS_FILE_MOUNT = '0';
  try {
    await withImage(async (image, at) => {
      await mountLayerImage(image, at);
      try {
        assert.match(mountSource(at) ?? '', /^\/dev\/loop\d+$/);
        assert.deepEqual(readdirSync(at), ['etc']);
        assert.equal(readFileSync(join(at, 'etc/hello'), 'utf8'), 'hello from the image');
      } finally {
        await unmountLayerImages([at]);
      }
    });
  } finally {
    if (saved === undefined) delete process.env.STRATA_EROFS_FILE_MOUNT;
    else process.env.STRATA_EROFS_FILE_MOUNT = saved;
  }
});
