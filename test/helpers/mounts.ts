// Removing a test's temp tree when strata left mounts in it: imported layers are loop-mounted
// squashfs images in the store (src/snapshot/squash-layer.ts), and rm -rf stops at a mount
// point (EBUSY).
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';

/** Mount points at or below `dir`, deepest first. */
export function mountsBelow(dir: string): string[] {
  const prefix = dir.replace(/\/+$/, '');
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\040/g, ' '))
    .filter((m) => m === prefix || m.startsWith(prefix + '/'))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts everything mounted below `dir`, then removes it. */
export function removeTree(dir: string): void {
  for (const m of mountsBelow(dir)) if (spawnSync('umount', [m]).status !== 0) spawnSync('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
}
