// Cleanup that also runs on Ctrl-C / SIGTERM: registries, dockerd and temp dirs started by a bench.
type Task = () => Promise<void> | void;

const tasks: Task[] = [];
let installed = false;
let running: Promise<void> | undefined;

export function onCleanup(task: Task): void {
  tasks.push(task);
  if (installed) return;
  installed = true;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
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
