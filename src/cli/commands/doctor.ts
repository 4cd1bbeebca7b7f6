// `strata doctor`: check the store and repair what a crash or a disk problem left behind.
import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { Store } from '../../cache/store.js';
import { runDoctor } from '../../cache/doctor.js';
import { cleanupStale } from '../../executor/cleanup.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('Check blobs against their digests and the index against the disk; repair what can be repaired')
    .option('--root <dir>', 'store directory')
    .option('--quick', 'do not re-hash every blob')
    .action(async (o: { root?: string; quick?: boolean }) => {
      const store = Store.open(o.root ? resolve(o.root) : undefined);
      try {
        const r = await runDoctor(store, {
          verifyBlobs: !o.quick,
          cleanupRuntime: async () => {
            await cleanupStale(join(store.root, 'state'));
          },
        });
        for (const p of r.problems) process.stdout.write(`problem: ${p}\n`);
        for (const p of r.repaired) process.stdout.write(`repaired: ${p}\n`);
        process.stdout.write(`checked ${r.checkedBlobs} blobs and ${r.checkedLayers} layers: ${r.problems.length === 0 ? 'store is consistent' : `${r.problems.length} problem(s), repaired what could be`}\n`);
        const unrepaired = r.problems.filter((p) => p.startsWith('SQLite') || p.includes('manifest'));
        if (unrepaired.length) process.exitCode = 1;
      } finally {
        store.close();
      }
    });
}
