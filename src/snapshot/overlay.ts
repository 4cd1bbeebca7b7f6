// Mounting and unmounting overlayfs with the mount(8)/umount(8) binaries (Node has no mount(2)).
//
// index, redirect_dir and metacopy are always off: with them on, the upper dir stops being a
// self-contained layer (sparse metacopy files, redirected directories, uppers tied to one set of
// lowers) and the differ would produce wrong layers.
//
// Mounts are `volatile` unless asked otherwise: a normal overlay unmount syncs the whole upper
// filesystem (46–60 ms per step here, against 11–15 ms volatile). The store does not need that
// sync: after a kill -9 the written pages are still in the page cache, and the store records a layer
// only after its upper is complete, so its state stays consistent. Only a power loss or kernel crash
// could lose the unsynced data of a layer already recorded, and that is out of scope for the store
// (like an un-fsynced write anywhere else in it). A volatile mount leaves WORK/work/incompat/volatile,
// which makes the kernel refuse the work dir for another mount; mountOverlay removes it first.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { StrataError } from '../errors.js';

export const MAX_LOWERS = 500;
// The kernel reads mount options from one page (4096 bytes, NUL included).
const MAX_OPTIONS = 4000;
const FIXED_OPTIONS = 'index=off,redirect_dir=off,metacopy=off';
const EMPTY_LOWER = '.strata-empty-lower';

export interface OverlayMount {
  /** lower directories, top-most first; may be empty */
  lowers: string[];
  upper: string;
  work: string;
  target: string;
  /** Sync the upper on unmount (a normal mount). Default false: mounted `volatile`. */
  durable?: boolean;
}

interface RunResult {
  code: number | null;
  stderr: string;
}

function run(cmd: string, args: string[], cwd?: string): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    child.once('error', reject);
    child.once('close', (code) => resolvePromise({ code, stderr: stderr.trim() }));
  });
}

/** Characters the option string cannot carry: separators of mount(8) and of lowerdir. */
function checkPath(what: string, p: string): void {
  if (/[,:\\\n]/.test(p)) {
    throw new StrataError('BAD_MOUNT_PATH', `cannot mount overlay: the ${what} path ${JSON.stringify(p)} contains ',', ':', '\\' or a newline`, {
      hint: 'Move the strata store to a path without these characters.',
    });
  }
}

function options(lowers: string[], upper: string, work: string, volatile: boolean): string {
  return `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work},${FIXED_OPTIONS}${volatile ? ',volatile' : ''}`;
}

/** Set once a kernel refused `volatile` (before Linux 5.10): mount without it from then on. */
let volatileUnsupported = false;

/** Where a volatile mount marks its work dir; the kernel refuses to mount with it present. */
export function volatileMarker(work: string): string {
  return join(work, 'work', 'incompat');
}

function commonDir(paths: string[]): string {
  let common = paths[0]!.split('/');
  for (const p of paths.slice(1)) {
    const parts = p.split('/');
    let i = 0;
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  return common.join('/') || '/';
}

/** Recent overlayfs complaints from the kernel log; the kernel explains mount failures there. */
async function overlayKernelMessages(): Promise<string[]> {
  return new Promise((resolvePromise) => {
    const child = spawn('dmesg', [], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out = (out + d.toString('utf8')).slice(-20000);
    });
    child.once('error', () => resolvePromise([]));
    child.once('close', () => resolvePromise(out.split('\n').filter((l) => l.includes('overlayfs')).slice(-3)));
  });
}

export async function mountOverlay(opts: OverlayMount): Promise<void> {
  if (opts.lowers.length > MAX_LOWERS) {
    throw new StrataError('TOO_MANY_LAYERS', `cannot mount a filesystem of ${opts.lowers.length} layers: overlayfs stacks at most ${MAX_LOWERS}`, {
      hint: 'Squash the base image (or merge steps) so the chain has fewer layers.',
    });
  }
  const upper = resolve(opts.upper);
  const work = resolve(opts.work);
  const target = resolve(opts.target);
  await Promise.all([mkdir(upper, { recursive: true }), mkdir(work, { recursive: true }), mkdir(target, { recursive: true })]);
  let lowers = opts.lowers.map((l) => resolve(l));
  if (lowers.length === 0) {
    // overlayfs needs at least one lower; an empty one shared by the uppers of this directory
    const empty = join(dirname(upper), EMPTY_LOWER);
    await mkdir(empty, { recursive: true, mode: 0o755 });
    lowers = [empty];
  }
  checkPath('upper', upper);
  checkPath('work', work);
  for (const l of lowers) checkPath('lower', l);
  // A work dir that served a volatile mount before: the marker would make this mount fail.
  await rm(volatileMarker(work), { recursive: true, force: true });
  const volatile = !opts.durable && !volatileUnsupported;
  try {
    await mountWith(opts, lowers, upper, work, target, volatile);
  } catch (e) {
    if (!volatile || !(e instanceof StrataError) || e.code !== 'MOUNT_FAILED') throw e;
    // Kernels before 5.10 do not know the option: if a durable mount works, use those from now on.
    await mountWith(opts, lowers, upper, work, target, false).catch(() => {
      throw e;
    });
    volatileUnsupported = true;
  }
}

async function mountWith(opts: OverlayMount, lowers: string[], upper: string, work: string, target: string, volatile: boolean): Promise<void> {
  let data = options(lowers, upper, work, volatile);
  let cwd: string | undefined;
  let linkDir: string | undefined;
  if (data.length > MAX_OPTIONS) {
    // Relative paths, resolved by the kernel against mount's working directory.
    cwd = commonDir([...lowers, upper, work]);
    const rel = (p: string): string => relative(cwd!, p) || '.';
    data = options(lowers.map(rel), rel(upper), rel(work), volatile);
    if (data.length > MAX_OPTIONS) {
      // Still too long: one short symlink per lower. The kernel resolves them at mount time,
      // so they can go as soon as mount returns.
      linkDir = await mkdtemp(join(dirname(upper), '.strata-lowers-'));
      await Promise.all(lowers.map((l, i) => symlink(l, join(linkDir!, String(i)))));
      cwd = linkDir;
      data = options(lowers.map((_, i) => String(i)), upper, work, volatile);
      if (data.length > MAX_OPTIONS) {
        await rm(linkDir, { recursive: true, force: true });
        throw new StrataError('BAD_MOUNT_PATH', `cannot mount overlay: the upper and work paths are too long (${upper.length + work.length} bytes)`, {
          hint: 'Use a shorter path for the strata store.',
        });
      }
    }
  }
  try {
    const r = await run('mount', ['-t', 'overlay', 'overlay', '-o', data, target], cwd);
    if (r.code !== 0) {
      const kernel = await overlayKernelMessages();
      throw new StrataError('MOUNT_FAILED', `mounting overlay on ${target} (${opts.lowers.length} lower layers) failed: ${r.stderr || `exit ${r.code}`}`, {
        hint: kernel.length > 0 ? `kernel says:\n${kernel.join('\n')}` : 'Run `dmesg | grep overlayfs` for the kernel’s reason. strata needs root and a kernel with overlayfs.',
      });
    }
  } finally {
    if (linkDir) await rm(linkDir, { recursive: true, force: true });
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function notMounted(stderr: string): boolean {
  return /not mounted|no mount point specified|mountpoint not found/i.test(stderr);
}

/** Unmounts; retries while busy, then detaches lazily. Unmounting what is not mounted is fine. */
export async function unmountOverlay(target: string): Promise<void> {
  const abs = resolve(target);
  let last = '';
  for (let attempt = 0; attempt < 6; attempt++) {
    const r = await run('umount', [abs]);
    if (r.code === 0 || notMounted(r.stderr)) return;
    last = r.stderr;
    if (!/busy/i.test(r.stderr)) break;
    await sleep(25 * 2 ** attempt);
  }
  if (/busy/i.test(last)) {
    // a process still has something open below the mount: detach now, the kernel frees it later
    const r = await run('umount', ['-l', abs]);
    if (r.code === 0 || notMounted(r.stderr)) return;
    last = r.stderr;
  }
  throw new StrataError('UNMOUNT_FAILED', `unmounting ${abs} failed: ${last}`, {
    hint: `Check what still uses it (\`fuser -vm ${abs}\`), then run \`umount ${abs}\`.`,
  });
}
