// seed004 with strata and with BuildKit (Debian's docker.io) side by side; see bench/README.md.
//
//   bench/seed004/run [--runs N=1] [--cold N] [--change N] [--import N] [--compression gzip|zstd]
//                     [--json FILE] [--socket PATH] [--verbose] [--keep]
//
// A Go build (apt-installed toolchain and libraries, Go's build cache in a cache mount) measured
// in three cases: cold, one-file change on the same machine, and one-file change on a fresh machine
// that imported job A's exported cache (strata: --cache-to/--cache-from type=local with the cache
// mounts; BuildKit: inline cache pushed to the loopback registry, then --cache-from on a pruned
// builder). Timings are printed, never asserted.
import { mkdtempSync, readdirSync, lstatSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRegistry } from '../test/helpers/registry.js';
import { pushDebian } from '../test/helpers/base-images.js';
import { checkInterrupted, onCleanup, removeTree, runCleanup } from './lib/cleanup.js';
import { checkLoopbackInsecure, ensureDockerd, type Dockerd } from './lib/dockerd.js';
import { repoRoot, strataCommand } from './lib/paths.js';
import { measure, ranSteps, stepTable, type MeasuredBuild } from './lib/report.js';
import { bytes, machineLine, median, secs, table } from './lib/stats.js';
import { runTimed, tail, type TimedRun } from './lib/timed-run.js';
import { SEED004_CHANGED_FILE, setRelease, writeSeed004 } from './seed004/project.js';

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    cold: { type: 'string' },
    change: { type: 'string' },
    import: { type: 'string' },
    compression: { type: 'string', default: 'gzip' },
    json: { type: 'string' },
    socket: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  process.stdout.write('usage: bench/seed004/run [--ref REV] [--runs N=1] [--cold N] [--change N] [--import N]\n'
    + '                         [--compression gzip|zstd] [--json FILE] [--socket PATH] [--verbose] [--keep]\n');
  process.exit(0);
}
const runs = (s: string | undefined, what: string): number => {
  const n = Number(s ?? opt.runs);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${what} wants a whole number of runs, got ${s ?? opt.runs}`);
  return n;
};

if (opt.compression !== 'gzip' && opt.compression !== 'zstd') {
  process.stderr.write(`seed004: --compression wants gzip or zstd, got ${opt.compression}\n`);
  process.exit(2);
}
// strata's exported cache (job A); gzip is --cache-to's default and what BENCHMARKS.md names.
const CACHE_TO_OPTS = `mode=max,mounts=all${opt.compression === 'zstd' ? ',compression=zstd' : ''}`;

const SEED004_SOCKET = '/run/strata-bench-seed004-docker.sock';

const log = (s: string): void => { process.stderr.write(`[bench] ${s}\n`); };
const TAG = 'seed004-bench:latest';
type Who = 'strata' | 'BuildKit';

/** Bytes under `dir` (files and symlinks, not following links). */
function treeBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += treeBytes(p);
    else n += lstatSync(p).size;
  }
  return n;
}

/** Lines strata prints about cache import/export (`imported cache: ...`, `exported cache to ...`). */
function cacheLines(run: TimedRun): string[] {
  return run.lines.map((l) => l.text).filter((t) => /^(imported cache|exported cache)/.test(t));
}

class Strata {
  private readonly cmd: string;
  private readonly args: string[];
  private generation = 0;
  root = '';

  constructor(private readonly work: string) {
    ({ cmd: this.cmd, args: this.args } = strataCommand());
  }

  /** A new empty store (a fresh machine); the previous one is removed. */
  freshStore(label: string): void {
    if (this.root) removeTree(this.root);
    this.root = join(this.work, `strata-store-${++this.generation}-${label}`);
  }

  build(ctx: string, extra: string[] = []): Promise<TimedRun> {
    if (!this.root) this.freshStore('first');
    return runTimed(this.cmd, [...this.args, 'build', ctx, '--root', this.root, '--network', 'host', '-t', TAG, '--progress=plain', ...extra], {
      onLine: opt.verbose ? (l) => process.stderr.write(`  strata| ${l.text}\n`) : undefined,
    });
  }
}

class BuildKit {
  constructor(private readonly d: Dockerd, readonly cacheRef: string) {}

  /** Forgets everything: the images (so their layers go) and the builder's cache, cache mounts included. */
  async prune(): Promise<void> {
    await this.d.docker(['image', 'rm', '-f', TAG, this.cacheRef]);
    const r = await this.d.docker(['builder', 'prune', '-af']);
    if (r.code !== 0) throw new Error(`docker builder prune failed:\n${tail(r)}`);
  }

  build(ctx: string, extra: string[] = []): Promise<TimedRun> {
    return this.d.docker(['build', '--network=host', '--progress=plain', '-t', TAG, ...extra, ctx], {
      onLine: opt.verbose ? (l) => process.stderr.write(`  docker| ${l.text}\n`) : undefined,
    });
  }

  push(ref: string): Promise<TimedRun> {
    return this.d.docker(['push', ref], {
      onLine: opt.verbose ? (l) => process.stderr.write(`  docker| ${l.text}\n`) : undefined,
    });
  }
}

interface CaseResult {
  name: string;
  goal: string;
  expectRan: string;
  builds: Record<Who, MeasuredBuild[]>;
  failures: Record<Who, string[]>;
}

function newCase(name: string, goal: string, expectRan: string): CaseResult {
  return { name, goal, expectRan, builds: { strata: [], BuildKit: [] }, failures: { strata: [], BuildKit: [] } };
}

function record(c: CaseResult, who: Who, i: number, run: TimedRun): void {
  const m = measure(run);
  if (run.code === 0) {
    c.builds[who].push(m);
    const ran = ranSteps(m);
    log(`${c.name} #${i + 1} ${who}: ${secs(run.wallMs)}${ran.length ? `, ran ${ran.length} step(s)` : ', all cached'}`);
  } else {
    c.failures[who].push(tail(run, 30));
    log(`${c.name} #${i + 1} ${who}: FAILED (exit ${run.code ?? run.signal})\n${tail(run, 30)}`);
  }
}

/** Runs `n` iterations; each runs both builders, alternating who goes first. */
async function runCase(
  c: CaseResult, n: number,
  beforeIteration: (i: number) => void,
  steps: Record<Who, (i: number) => Promise<TimedRun>>,
): Promise<CaseResult> {
  for (let i = 0; i < n; i++) {
    beforeIteration(i);
    const order: Who[] = i % 2 === 0 ? ['strata', 'BuildKit'] : ['BuildKit', 'strata'];
    for (const who of order) {
      checkInterrupted();
      record(c, who, i, await steps[who](i));
    }
  }
  return c;
}

const wallMedian = (c: CaseResult | undefined, who: Who): number => median((c?.builds[who] ?? []).map((b) => b.run.wallMs));

function summarize(cases: CaseResult[], sameMachine: CaseResult | undefined): string {
  const rows = cases.map((c) => {
    const s = wallMedian(c, 'strata');
    const k = wallMedian(c, 'BuildKit');
    const fail = (who: Who) => (c.failures[who].length ? ` (${c.failures[who].length} failed)` : '');
    const own = c.name.startsWith('one-file change, fresh') ? s / wallMedian(sameMachine, 'strata') : NaN;
    return [
      c.name,
      `${secs(s)}${fail('strata')}`,
      `${secs(k)}${fail('BuildKit')}`,
      Number.isFinite(s) && Number.isFinite(k) ? `${(s / k).toFixed(2)}×` : '-',
      Number.isFinite(own) ? `${own.toFixed(2)}×` : '',
      c.goal,
      String(Math.max(c.builds.strata.length + c.failures.strata.length, c.builds.BuildKit.length + c.failures.BuildKit.length)),
    ];
  });
  return table(['case', 'strata', 'BuildKit', 'strata/BuildKit', 'strata/own same-machine', 'goal', 'runs'], rows);
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
    out.push(`-- ${who}: steps that ran in the last run: ${ran.length ? ran.join(' | ') : 'none'}`);
    for (const l of cacheLines(last.run)) out.push(`   ${l}`);
    out.push(stepTable(builds).split('\n').map((l) => `   ${l}`).join('\n'));
  }
  return out.join('\n');
}

interface JobA {
  strata?: { wallMs: number; ok: boolean; exportedBytes?: number; lines: string[] };
  buildkit?: { buildMs: number; pushMs: number; ok: boolean };
}

async function main(): Promise<void> {
  const root = repoRoot();
  const machine = machineLine(root);
  log(machine);
  const work = mkdtempSync('/tmp/strata-bench-seed004-');
  onCleanup(() => {
    if (opt.keep) log(`kept ${work}`);
    else removeTree(work);
  });

  const reg = await startRegistry();
  onCleanup(() => reg.stop());
  const base = await pushDebian(reg.host);
  log(`registry ${reg.host}: pushed ${base.ref}`);

  // Its own socket by default: this bench prunes the builder, which would wipe the cache of a
  // compare-buildkit run sharing /run/strata-bench-docker.sock.
  const dockerd = await ensureDockerd({ socket: opt.socket ?? SEED004_SOCKET, log });
  onCleanup(() => dockerd.stop());
  await checkLoopbackInsecure(dockerd);
  log('dockerd lists 127.0.0.0/8 as insecure: it pulls the base and pushes the cache image over plain HTTP');

  const ctx = join(work, 'seed004');
  const files = writeSeed004(ctx, base.ref);
  log(`seed004: ${files} files in ${ctx}`);

  const strata = new Strata(work);
  const buildkit = new BuildKit(dockerd, `${reg.host}/seed004-cache:latest`);
  const cacheDir = join(work, 'cache-job-a');
  const cases: CaseResult[] = [];

  // 1. cold: a new store / a pruned builder; both pull the base and fetch the .debs from the mirror.
  const cold = newCase('cold build', '≤ 1× (BuildKit 47.6 s)', 'every step (apt ~1 min, go build ~30 s on a loaded 2-core VM)');
  cases.push(await runCase(cold, runs(opt.cold, 'cold'), () => setRelease(ctx, 'seed004 initial'), {
    strata: async (i) => { strata.freshStore(`cold${i + 1}`); return strata.build(ctx); },
    BuildKit: async () => { await buildkit.prune(); return buildkit.build(ctx); },
  }));

  // 2. one file changed, same machine: COPY and go build rerun, go build finds its cache mount warm.
  const change = newCase('one-file change, same machine', '≤ 1× (BuildKit 1.1 s)', `COPY . ., RUN go build (edits ${SEED004_CHANGED_FILE})`);
  cases.push(await runCase(change, runs(opt.change, 'change'), (i) => setRelease(ctx, `seed004 change ${i + 1}`), {
    strata: () => strata.build(ctx),
    BuildKit: () => buildkit.build(ctx),
  }));

  // 3. job A exports its cache from the same-machine state; job B is a fresh machine that imports it
  // and builds with one file changed.
  const nImport = runs(opt.import, 'import');
  const jobA: JobA = {};
  if (nImport > 0) {
    checkInterrupted();
    log('job A, strata: rebuild with --cache-to (all steps cached; the export is the work)');
    const a = await strata.build(ctx, ['--cache-to', `type=local,dest=${cacheDir},${CACHE_TO_OPTS}`]);
    jobA.strata = { wallMs: a.wallMs, ok: a.code === 0, lines: cacheLines(a) };
    if (a.code === 0) jobA.strata.exportedBytes = treeBytes(cacheDir);
    else log(`job A strata: FAILED (exit ${a.code ?? a.signal})\n${tail(a, 30)}`);
    log(`job A strata: ${secs(a.wallMs)}${jobA.strata.exportedBytes !== undefined ? `, exported ${bytes(jobA.strata.exportedBytes)}` : ''}`);

    checkInterrupted();
    log(`job A, BuildKit: rebuild with BUILDKIT_INLINE_CACHE=1 as ${buildkit.cacheRef}, then push it`);
    const b = await buildkit.build(ctx, ['--build-arg', 'BUILDKIT_INLINE_CACHE=1', '-t', buildkit.cacheRef]);
    const p = b.code === 0 ? await buildkit.push(buildkit.cacheRef) : undefined;
    jobA.buildkit = { buildMs: b.wallMs, pushMs: p?.wallMs ?? NaN, ok: b.code === 0 && p?.code === 0 };
    if (!jobA.buildkit.ok) log(`job A BuildKit: FAILED\n${tail(p ?? b, 30)}`);
    log(`job A BuildKit: build ${secs(b.wallMs)}, push ${secs(p?.wallMs ?? NaN)}`);
  }
  const imported = newCase('one-file change, fresh machine + job A cache', '≤ 1.5× strata same-machine (BuildKit 21.8 s)',
    `COPY . ., RUN go build (edits ${SEED004_CHANGED_FILE}); strata: go build with the imported cache mount warm`);
  cases.push(await runCase(imported, nImport, (i) => setRelease(ctx, `seed004 imported ${i + 1}`), {
    strata: async (i) => {
      strata.freshStore(`jobB${i + 1}`);
      return strata.build(ctx, ['--cache-from', `type=local,src=${cacheDir}`]);
    },
    BuildKit: async () => {
      await buildkit.prune();
      return buildkit.build(ctx, ['--cache-from', buildkit.cacheRef]);
    },
  }));

  const shown = cases.filter((c) => c.builds.strata.length + c.builds.BuildKit.length + c.failures.strata.length + c.failures.BuildKit.length > 0);
  process.stdout.write(`\nseed004: strata vs BuildKit (docker ${dockerd.serverVersion}), medians of wall time per build\n`);
  process.stdout.write(`machine: ${machine}\n\n${summarize(shown, change)}\n\n`);
  if (jobA.strata || jobA.buildkit) {
    const s = jobA.strata;
    const k = jobA.buildkit;
    process.stdout.write('job A (before case 3, not part of its time):\n'
      + (s ? `  strata  : build --cache-to type=local,dest=DIR,${CACHE_TO_OPTS} ${secs(s.wallMs)}${s.ok ? '' : ' FAILED'}`
        + `${s.exportedBytes !== undefined ? `, ${bytes(s.exportedBytes)} exported` : ''}${s.lines.length ? ` (${s.lines.join('; ')})` : ''}\n` : '')
      + (k ? `  BuildKit: build with BUILDKIT_INLINE_CACHE=1 ${secs(k.buildMs)}, docker push ${secs(k.pushMs)}${k.ok ? '' : ' FAILED'}\n` : '')
      + '\n');
  }
  for (const c of shown) process.stdout.write(`${details(c)}\n\n`);

  if (opt.json) {
    writeFileSync(opt.json, JSON.stringify({
      machine, docker: dockerd.serverVersion, date: new Date().toISOString(), cacheTo: CACHE_TO_OPTS, jobA,
      cases: cases.map((c) => ({
        name: c.name, goal: c.goal,
        strata: { wallMs: c.builds.strata.map((b) => b.run.wallMs), ran: c.builds.strata.map(ranSteps), failures: c.failures.strata.length },
        buildkit: { wallMs: c.builds.BuildKit.map((b) => b.run.wallMs), ran: c.builds.BuildKit.map(ranSteps), failures: c.failures.BuildKit.length },
      })),
    }, null, 2) + '\n');
    log(`wrote ${opt.json}`);
  }
}

try {
  await main();
} catch (e) {
  process.stderr.write(`seed004: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await runCleanup();
}
