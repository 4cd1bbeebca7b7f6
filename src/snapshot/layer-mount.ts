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
//
// The image is mounted straight from its file where the kernel can (EROFS file-backed mounts,
// Linux 6.12+): mount(8) would put a loop device under it, and setting up a loop device writes
// the file's dirty pages back to the disk first. An image was written a moment before it is
// mounted, so that flush made the step wait for the disk (about 0.4 s for a 774 MB layer here).
// A file-backed mount reads through the page cache and lets writeback happen whenever it does.
// mount(8) has no way to ask for it, so the mount(2) call is made by perl (perl-base is
// essential on Debian), with mount(8) and its loop device where that fails (an older kernel, no
// perl, an architecture without a known syscall number).
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

/** mount(2)'s number per Node architecture. */
const SYS_MOUNT: Partial<Record<string, number>> = { x64: 165, arm64: 40, riscv64: 40, loong64: 40, ia32: 21, arm: 21, ppc64: 21, s390x: 21 };
const MS_RDONLY = 1;
/** mount(2) with the image file as the source; perl wants writable strings for pointer arguments. */
const MOUNT_SCRIPT = `my ($src, $dir, $type) = (@ARGV, 'erofs'); syscall(${SYS_MOUNT[process.arch] ?? 0}, $src, $dir, $type, ${MS_RDONLY}, 0) == 0 or die "$!\n";`;

/** Set once a file-backed mount failed where a loop mount then worked: loop mounts from then on. */
let fileMountsFailed = false;

function fileMounts(): boolean {
  return !fileMountsFailed && SYS_MOUNT[process.arch] !== undefined && process.env.STRATA_EROFS_FILE_MOUNT !== '0';
}

/** Mounts `image` read-only at `dir` (created when missing). */
export async function mountLayerImage(image: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  let fileError = '';
  if (fileMounts()) {
    const f = await run('perl', ['-e', MOUNT_SCRIPT, image, dir]);
    if (f.code === 0) return;
    fileError = f.stderr || `exit ${f.code}`;
  }
  const r = await run('mount', ['-t', 'erofs', '-o', 'ro', image, dir]);
  if (r.code !== 0) throw new LayerImageMountError(`mount ${image} failed: ${r.stderr || `exit ${r.code}`}${fileError ? ` (mounting the file itself: ${fileError})` : ''}`);
  // The kernel (or this machine) cannot mount the file itself: do not try again.
  if (fileError) fileMountsFailed = true;
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
