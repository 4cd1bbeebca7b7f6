// Cold builds of examples/app, each with a fresh store; prints the wall time per step and in total.
//
//   bench/cold-build [--runs N] [--verbose] [--json FILE]
//
// The base image is the busybox OCI layout from test/helpers (made from busybox-static, cached in
// ~/.cache/strata-test), given as `--build-context busybox=oci-layout://DIR:latest` as in the demo.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { busyboxLayout } from '../test/helpers/base-images.js';
import { checkInterrupted, onCleanup, removeTree, runCleanup } from './lib/cleanup.js';
import { repoRoot, strataCommand } from './lib/paths.js';
import { measure, ranSteps, stepTable, type MeasuredBuild } from './lib/report.js';
import { bytes, machineLine, median, secs } from './lib/stats.js';
import { runTimed, tail } from './lib/timed-run.js';

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    json: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  process.stdout.write('usage: bench/cold-build [--ref REV] [--runs N=3] [--json FILE] [--verbose]\n');
  process.exit(0);
}
const n = Number(opt.runs);
if (!Number.isInteger(n) || n < 1) throw new Error(`--runs wants a whole number ≥ 1, got ${opt.runs}`);
const log = (s: string): void => { process.stderr.write(`[bench] ${s}\n`); };

async function main(): Promise<void> {
  const root = repoRoot();
  const machine = machineLine(root);
  log(machine);
  const app = join(root, 'examples', 'app');
  const base = await busyboxLayout();
  const work = mkdtempSync('/tmp/strata-bench-cold-');
  onCleanup(() => removeTree(work));
  const { cmd, args } = strataCommand(root);

  const builds: MeasuredBuild[] = [];
  for (let i = 0; i < n; i++) {
    checkInterrupted();
    const store = join(work, `store-${i}`);
    const run = await runTimed(cmd, [...args, 'build', app, '--root', store, '--build-context', `busybox=oci-layout://${base}:latest`,
      '-t', 'strata-bench-app:latest', '--progress=plain'], {
      onLine: opt.verbose ? (l) => process.stderr.write(`  strata| ${l.text}\n`) : undefined,
    });
    if (run.code !== 0) throw new Error(`cold build #${i + 1} failed (exit ${run.code}):\n${tail(run, 40)}`);
    const m = measure(run);
    builds.push(m);
    log(`cold build #${i + 1}: ${secs(run.wallMs)}, ${ranSteps(m).length} steps ran`);
    removeTree(store);
  }

  const ctx = builds.map((b) => b.progress.contextBytesRead).filter((x): x is number => x !== undefined);
  process.stdout.write(`\ncold build of examples/app, fresh store each run (${n} runs)\nmachine: ${machine}\n\n`);
  process.stdout.write(`${stepTable(builds)}\n`);
  if (ctx.length) process.stdout.write(`context read: ${bytes(median(ctx))}\n`);
  if (opt.json) {
    writeFileSync(opt.json, JSON.stringify({
      machine, date: new Date().toISOString(),
      runs: builds.map((b) => ({
        wallMs: b.run.wallMs, contextBytesRead: b.progress.contextBytesRead ?? null,
        steps: b.progress.steps.map((s) => ({ name: s.name, cached: s.cached, doneSecs: s.doneSecs ?? null, spanMs: s.lastMs - s.firstMs })),
      })),
    }, null, 2) + '\n');
    log(`wrote ${opt.json}`);
  }
}

try {
  await main();
} catch (e) {
  process.stderr.write(`cold-build: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await runCleanup();
}
