// Test rootfs: busybox-static and its applet symlinks, optionally under an overlay mount.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectRuntime } from '../../src/executor/runtime.js';
import type { Runtime, RuntimeName } from '../../src/executor/types.js';

export const BUSYBOX = '/bin/busybox';

export function tempDir(prefix: string): string {
  return realpathSync(mkdtempSync(join(tmpdir(), `strata-exec-${prefix}-`)));
}

/** A directory holding /bin/busybox and a symlink per applet. */
export function makeBusyboxRootfs(dir: string): string {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  copyFileSync(BUSYBOX, join(dir, 'bin', 'busybox'));
  execFileSync('chmod', ['755', join(dir, 'bin', 'busybox')]);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a));
  return dir;
}

export function writeUsers(rootfs: string): void {
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(
    join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:App:/home/app:/bin/sh\n',
  );
  writeFileSync(
    join(rootfs, 'etc', 'group'),
    'root:x:0:\napp:x:1234:\nextra:x:5555:app\nmore:x:6666:root,app\n',
  );
}

export interface OverlayRoot {
  lower: string;
  upper: string;
  merged: string;
  dispose(): void;
}

/** Busybox lower + empty upper, mounted as an overlay like the snapshotter does. */
export function mountOverlay(base: string, prepareLower?: (lower: string) => void): OverlayRoot {
  const lower = makeBusyboxRootfs(join(base, 'lower'));
  prepareLower?.(lower);
  const upper = join(base, 'upper');
  const work = join(base, 'work');
  const merged = join(base, 'merged');
  for (const d of [upper, work, merged]) mkdirSync(d, { recursive: true });
  execFileSync('mount', [
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${lower},upperdir=${upper},workdir=${work},index=off,redirect_dir=off,metacopy=off`,
    merged,
  ]);
  return {
    lower,
    upper,
    merged,
    dispose() {
      execFileSync('umount', [merged]);
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** The runtime, or the reason it cannot be tested here. */
export async function runtimeOrSkip(name: RuntimeName): Promise<Runtime | string> {
  const saved = process.env.STRATA_RUNTIME;
  delete process.env.STRATA_RUNTIME;
  try {
    return await detectRuntime(name);
  } catch (e) {
    return `${name} is not installed (${(e as Error).message}); apt-get install ${name}`;
  } finally {
    if (saved !== undefined) process.env.STRATA_RUNTIME = saved;
  }
}

/** Containers the runtime knows under `root`. */
export function listContainers(rt: Runtime, root: string): string[] {
  const args = ['--root', root, 'list', '-q'];
  const out = execFileSync(rt.path, args, { encoding: 'utf8' });
  return out.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}
