// proj1 with strata and with BuildKit (Debian's docker.io) side by side; see bench/README.md.
//
//   bench/compare-buildkit [--cold N] [--nochange N] [--touch N] [--change N] [--json FILE] [--verbose] [--keep]
//
// Starts a loopback registry holding busybox, a dockerd on its own socket unless one answers there,
// generates proj1 in a temp dir, then runs each case with both builders (alternating which goes
// first) and prints medians and the strata/BuildKit ratio. Timings are printed, never asserted.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRegistry } from '../test/helpers/registry.js';
import { pushBusybox } from '../test/helpers/base-images.js';
import { checkInterrupted, onCleanup, removeTree, runCleanup } from './lib/cleanup.js';
import { checkLoopbackInsecure, ensureDockerd, type Dockerd } from './lib/dockerd.js';
import { repoRoot, strataCommand } from './lib/paths.js';
import { measure, ranSteps, stepTable, type MeasuredBuild } from './lib/report.js';
import { bytes, machineLine, median, secs, table } from './lib/stats.js';
import { runTimed, tail, type TimedRun } from './lib/timed-run.js';
import { changeOneFile, contextBytes, generateProj1, PROJ1_CHANGED_FILE, touchAll } from './proj1/generate.js';

const { values: opt } = parseArgs({
  options: {
    cold: { type: 'string', default: '3' },
    nochange: { type: 'string', default: '7' },
    touch: { type: 'string', default: '5' },
    change: { type: 'string', default: '5' },
    json: { type: 'string' },
    socket: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  process.stdout.write('usage: bench/compare-buildkit [--cold N=3] [--nochange N=7] [--touch N=5] [--change N=5]\n'
    + '                            [--json FILE] [--socket PATH] [--verbose] [--keep]\n');
  process.exit(0);
}
const runs = (s: string | undefined, what: string): number => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${what} wants a whole number of runs, got ${s}`);
  return n;
};

const log = (s: string): void => { process.stderr.write(`[bench] ${s}\n`); };
const TAG = 'proj1-bench:latest';

interface Builder {
  name: 'strata' | 'BuildKit';
  /** Forget everything cached (outside the timing). */
  reset(): Promise<void>;
  build(ctx: string): Promise<TimedRun>;
}

function strataBuilder(work: string): Builder {
  const { cmd, args } = strataCommand();
  let root = '';
  let generation = 0;
  return {
    name: 'strata',
    async reset() {
      // The previous store stays until the work dir goes at the end: deleting thousands of files
      // right before a cold build slows the build's own file creation on ext4 without a journal
      // (it skips inodes freed in the last 30 s), which a fresh machine does not see.
      root = join(work, `strata-store-${++generation}`);
    },
    build(ctx) {
      return runTimed(cmd, [...args, 'build', ctx, '--root', root, '-t', TAG, '--progress=plain'], {
        onLine: opt.verbose ? (l) => process.stderr.write(`  strata| ${l.text}\n`) : undefined,
      });
    },
  };
}

function buildkitBuilder(d: Dockerd): Builder {
  return {
    name: 'BuildKit',
    async reset() {
      await d.docker(['image', 'rm', '-f', TAG]);
      const r = await d.docker(['builder', 'prune', '-af']);
      if (r.code !== 0) throw new Error(`docker builder prune failed:\n${tail(r)}`);
    },
    build(ctx) {
      return d.docker(['build', '--network=host', '--progress=plain', '-t', TAG, ctx], {
        onLine: opt.verbose ? (l) => process.stderr.write(`  docker| ${l.text}\n`) : undefined,
      });
    },
  };
}

interface CaseResult {
  name: string;
  goal: string;
  expectRan: string;
  builds: Record<Builder['name'], MeasuredBuild[]>;
  failures: Record<Builder['name'], string[]>;
}

async function runCase(
  name: string, goal: string, expectRan: string, n: number, builders: Builder[], ctx: string,
  hooks: { beforeIteration?: (i: number) => Promise<void> | void; beforeBuild?: (b: Builder, i: number) => Promise<void> | void },
): Promise<CaseResult> {
  const res: CaseResult = { name, goal, expectRan, builds: { strata: [], BuildKit: [] }, failures: { strata: [], BuildKit: [] } };
  for (let i = 0; i < n; i++) {
    await hooks.beforeIteration?.(i);
    // Alternate who goes first so page-cache warmth and background noise fall on both.
    const order = i % 2 === 0 ? builders : [...builders].reverse();
    for (const b of order) {
      checkInterrupted();
      await hooks.beforeBuild?.(b, i);
      const run = await b.build(ctx);
      const m = measure(run);
      if (run.code === 0) {
        res.builds[b.name].push(m);
        log(`${name} #${i + 1} ${b.name}: ${secs(run.wallMs)}${ranSteps(m).length ? `, ran ${ranSteps(m).length} step(s)` : ', all cached'}`);
      } else {
        res.failures[b.name].push(tail(run, 30));
        log(`${name} #${i + 1} ${b.name}: FAILED (exit ${run.code})\n${tail(run, 30)}`);
      }
    }
  }
  return res;
}

function summarize(cases: CaseResult[]): string {
  const rows = cases.map((c) => {
    const s = median(c.builds.strata.map((b) => b.run.wallMs));
    const k = median(c.builds.BuildKit.map((b) => b.run.wallMs));
    const fail = (who: Builder['name']) => (c.failures[who].length ? ` (${c.failures[who].length} failed)` : '');
    const ctxRead = c.builds.strata.map((b) => b.progress.contextBytesRead).filter((x): x is number => x !== undefined);
    return [
      c.name,
      `${secs(s)}${fail('strata')}`,
      `${secs(k)}${fail('BuildKit')}`,
      Number.isFinite(s) && Number.isFinite(k) ? `${(s / k).toFixed(2)}×` : '-',
      c.goal,
      ctxRead.length ? bytes(median(ctxRead)) : '-',
      String(Math.max(c.builds.strata.length, c.builds.BuildKit.length)),
    ];
  });
  return table(['case', 'strata', 'BuildKit', 'strata/BuildKit', 'goal', 'strata context read', 'runs'], rows);
}

function details(c: CaseResult): string {
  const out: string[] = [`== ${c.name}: expected to run: ${c.expectRan}`];
  for (const who of ['strata', 'BuildKit'] as const) {
    const builds = c.builds[who];
    if (!builds.length) {
      out.push(`-- ${who}: no successful run${c.failures[who][0] ? `; last failure:\n${c.failures[who].at(-1)}` : ''}`);
      continue;
    }
    const last = builds.at(-1)!;
    const ran = ranSteps(last);
    const extra = [
      last.progress.contextBytesRead !== undefined ? `context read ${bytes(last.progress.contextBytesRead)}` : '',
      last.progress.contextTransfer ? `context transfer ${last.progress.contextTransfer}` : '',
    ].filter(Boolean).join(', ');
    out.push(`-- ${who}: steps that ran in the last run: ${ran.length ? ran.join(' | ') : 'none'}${extra ? `; ${extra}` : ''}`);
    out.push(stepTable(builds).split('\n').map((l) => `   ${l}`).join('\n'));
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const root = repoRoot();
  const machine = machineLine(root);
  log(machine);
  const work = mkdtempSync('/tmp/strata-bench-proj1-');
  onCleanup(() => {
    if (opt.keep) log(`kept ${work}`);
    else removeTree(work);
  });

  const reg = await startRegistry();
  onCleanup(() => reg.stop());
  const base = await pushBusybox(reg.host);
  log(`registry ${reg.host}: pushed ${base.ref}`);

  const dockerd = await ensureDockerd({ socket: opt.socket, log });
  onCleanup(() => dockerd.stop());
  await checkLoopbackInsecure(dockerd);
  log('dockerd lists 127.0.0.0/8 as insecure: it pulls the base over plain HTTP');

  const ctx = join(work, 'proj1');
  const files = generateProj1(ctx, base.ref);
  log(`proj1: ${files} files, ${bytes(contextBytes(ctx))} in ${ctx}`);

  const builders = [strataBuilder(work), buildkitBuilder(dockerd)];
  const cases: CaseResult[] = [];
  const nothing = 'nothing (all CACHED)';

  cases.push(await runCase('cold build', '≤ 1× (BuildKit 3.30 s)', 'every step', runs(opt.cold, 'cold'), builders, ctx, {
    beforeBuild: (b) => b.reset(),
  }));
  cases.push(await runCase('no-change rebuild', '≤ 0.5× (BuildKit 0.27 s)', nothing, runs(opt.nochange, 'nochange'), builders, ctx, {}));
  cases.push(await runCase('touch every file', '≤ 0.25× (BuildKit 1.78 s)', nothing, runs(opt.touch, 'touch'), builders, ctx, {
    // Touched before each builder's run, so each sees new mtimes since its own previous build.
    beforeBuild: () => { touchAll(ctx); },
  }));
  cases.push(await runCase('one source file changed', 'overhead ≤ 0.5× (BuildKit 2.21 s)',
    `[transpile] COPY src, [transpile] RUN sleep 1…, [stage-4] COPY --from=transpile (edits ${PROJ1_CHANGED_FILE})`,
    runs(opt.change, 'change'), builders, ctx, {
      beforeIteration: (i) => { changeOneFile(ctx, i); },
    }));

  const summary = summarize(cases.filter((c) => c.builds.strata.length + c.builds.BuildKit.length + c.failures.strata.length > 0));
  process.stdout.write(`\nproj1: strata vs BuildKit (docker ${dockerd.serverVersion}), medians of wall time per build\n`);
  process.stdout.write(`machine: ${machine}\n\n${summary}\n\n`);
  for (const c of cases) if (c.builds.strata.length || c.builds.BuildKit.length) process.stdout.write(`${details(c)}\n\n`);

  if (opt.json) {
    writeFileSync(opt.json, JSON.stringify({
      machine, docker: dockerd.serverVersion, date: new Date().toISOString(),
      cases: cases.map((c) => ({
        name: c.name, goal: c.goal,
        strata: { wallMs: c.builds.strata.map((b) => b.run.wallMs), ran: c.builds.strata.map(ranSteps), contextBytesRead: c.builds.strata.map((b) => b.progress.contextBytesRead ?? null), failures: c.failures.strata.length },
        buildkit: { wallMs: c.builds.BuildKit.map((b) => b.run.wallMs), ran: c.builds.BuildKit.map(ranSteps), contextTransfer: c.builds.BuildKit.map((b) => b.progress.contextTransfer ?? null), failures: c.failures.BuildKit.length },
      })),
    }, null, 2) + '\n');
    log(`wrote ${opt.json}`);
  }
}

try {
  await main();
} catch (e) {
  process.stderr.write(`compare-buildkit: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await runCleanup();
}
