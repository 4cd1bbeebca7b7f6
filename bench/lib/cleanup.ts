// Cleanup that also runs on Ctrl-C / SIGTERM: registries, dockerd and temp dirs started by a bench.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';

type Task = () => Promise<void> | void;

const tasks: Task[] = [];
let installed = false;
let running: Promise<void> | undefined;
let stopRequested = false;

/** Throws once Ctrl-C / SIGTERM arrived, so bench loops stop starting builds while cleanup runs. */
export function checkInterrupted(): void {
  if (stopRequested) throw new Error('interrupted');
}

export function onCleanup(task: Task): void {
  tasks.push(task);
  if (installed) return;
  installed = true;
  // A reader that goes away (`| head`) must not kill the bench before it stops dockerd.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => { if (e.code !== 'EPIPE') throw e; });
  }
  process.once('uncaughtException', (e) => {
    stopRequested = true;
    try { process.stderr.write(`bench: ${e.stack ?? e}\ncleaning up...\n`); } catch { /* stderr gone */ }
    void runCleanup().finally(() => process.exit(1));
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      stopRequested = true;
      process.stderr.write(`\n${sig}: cleaning up...\n`);
      void runCleanup().finally(() => process.exit(130));
    });
  }
}

/** Runs every registered task once, newest first; errors are reported, not thrown. */
export function runCleanup(): Promise<void> {
  running ??= (async () => {
    while (tasks.length) {
      const task = tasks.pop()!;
      try {
        await task();
      } catch (e) {
        process.stderr.write(`cleanup: ${(e as Error).message}\n`);
      }
    }
    running = undefined;
  })();
  return running;
}

/**
 * `rm -rf dir`, after lazily unmounting whatever is still mounted below it (deepest first): a build
 * interrupted by Ctrl-C can leave overlay mounts in its store, and dockerd killed hard leaves its own.
 */
export function removeTree(dir: string): void {
  const prefix = dir.replace(/\/+$/, '') + '/';
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n')
    .map((l) => (l.split(' ')[1] ?? '').replace(/\\040/g, ' '))
    .filter((m) => m.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
}
