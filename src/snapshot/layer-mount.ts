// Mounting layers kept as EROFS images (layer-image.ts writes them as `layers/<hex>.erofs`).
//
// A process mounts an image read-only the first time it uses the layer as a lower
// (Store.layerLower) and keeps it for as long as it runs: overlays are mounted on it, and the
// commit of a step looks things up in the lowers. The store unmounts it in close() or at exit, so
// nothing stays mounted in the store between processes: no mount to redo after a reboot, none to
// undo before `rm -rf` of a store (a lasting mount makes that fail with EBUSY), none shared between
// processes. Each mount is at a fresh directory below the store's tmp dir (named with the pid),
// which is where the store's stale-mount cleanup looks after a kill -9.
// Kept apart from the writer so mounting a chain does not load the tar code.
import { mkdir } from 'node:fs/promises';
import { spawn } from 'node:child_process';

/** File name suffix of a layer image, next to where the layer's directory would be. */
export const IMAGE_SUFFIX = '.erofs';

/** Mounting a layer image failed (no mount rights, no loop device on a kernel before 6.12, a damaged image). */
export class LayerImageMountError extends Error {}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.once('error', (e) => resolve({ code: -1, stderr: e.message }));
    child.once('close', (code) => resolve({ code, stderr: stderr.trim() }));
  });
}

/** Mounts `image` read-only at `dir` (created when missing). */
export async function mountLayerImage(image: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const r = await run('mount', ['-t', 'erofs', '-o', 'ro', image, dir]);
  if (r.code !== 0) throw new LayerImageMountError(`mount ${image} failed: ${r.stderr || `exit ${r.code}`}`);
}

/** Detaches the mounts at `dirs` (lazily when busy); never throws. */
export async function unmountLayerImages(dirs: string[]): Promise<void> {
  if (dirs.length === 0) return;
  const r = await run('umount', dirs);
  if (r.code !== 0) await Promise.all(dirs.map((d) => run('umount', ['-l', d])));
}

let mountable: Promise<void> | undefined;

/**
 * Mounts and unmounts `image` once per process (at `scratch`, a fresh dir below the store's tmp):
 * the probe's stats cannot tell whether loop mounts are allowed (a container without the right).
 * Rejects with LayerImageMountError when they are not.
 */
export function checkMountable(image: string, scratch: string): Promise<void> {
  mountable ??= (async () => {
    await mountLayerImage(image, scratch);
    await unmountLayerImages([scratch]);
  })();
  return mountable;
}
