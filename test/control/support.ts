// Shared pieces of the cache-control tests (TTL, du, prune, cache mounts, GC): a store per test
// file driven through the real CLI, the plain-progress parser of the build tests, and
// readers for `strata du --format json` and `strata doctor`.
import { existsSync, readFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataEnv, STRATA_BIN, expectOk, parseProgress, type ProgressStep, type RunResult } from '../build/harness.js';
import { busyboxLayout } from '../helpers/base-images.js';
import { cacheMountKey } from '../../src/cache/cache-mounts.js';

export { StrataEnv, expectOk, type RunResult };

/** A vertex of the plain progress output (the build tests' parser: one for every test area). */
export type PlainStep = ProgressStep;

/** Every vertex of the plain progress output, `[internal]` loads included. */
export const parsePlainSteps = parseProgress;

/** The instruction steps of the plain progress output. */
export function parsePlain(stderr: string): PlainStep[] {
  return parsePlainSteps(stderr).filter((s) => !s.name.startsWith('[internal]'));
}

export interface Built extends RunResult {
  steps: PlainStep[];
}

export interface DuRecord {
  id: string;
  type: 'regular' | 'image' | 'exec.cachemount' | 'source.local';
  size: number;
  created: string;
  last_used: string;
  in_use: boolean;
  shared: boolean;
  description: string;
}

export interface ControlEnv {
  env: StrataEnv;
  busybox: string[];
  /** `strata build --progress=plain` with busybox as a named context; never throws. */
  build(dir: string, args?: string[], extraEnv?: Record<string, string>): Promise<Built>;
  /** A build that must succeed. */
  ok(dir: string, args?: string[], extraEnv?: Record<string, string>): Promise<Built>;
  /** A build started in the background (its own process), for concurrency tests. */
  spawnBuild(dir: string, args?: string[], extraEnv?: Record<string, string>): { child: ChildProcess; done: Promise<Built> };
  /** Any other `strata` command that must succeed. */
  cli(args: string[], extraEnv?: Record<string, string>): Promise<RunResult>;
  du(filters?: string[], extraEnv?: Record<string, string>): Promise<DuRecord[]>;
  /** `strata doctor` must find nothing to repair. */
  assertConsistent(what: string): Promise<void>;
  /** The host folder behind a cache mount id. */
  mountData(id: string): string;
}

export async function controlEnv(name: string): Promise<ControlEnv> {
  const env = new StrataEnv(`strata-control-${name}-`);
  const busybox = ['--build-context', `busybox=oci-layout://${await busyboxLayout()}:latest`];
  // GC must not interfere unless a test asks for it (the default is 10% of the disk).
  const baseEnv = { STRATA_GC_KEEP_STORAGE: '100GB' };
  const build = async (dir: string, args: string[] = [], extraEnv: Record<string, string> = {}): Promise<Built> => {
    const r = await env.strata(['build', '--progress=plain', ...busybox, ...args, dir], { env: { ...baseEnv, ...extraEnv } });
    return { ...r, steps: parsePlain(r.stderr) };
  };
  const cli = async (args: string[], extraEnv: Record<string, string> = {}) => expectOk(await env.strata(args, { env: extraEnv }), `strata ${args.join(' ')}`);
  return {
    env,
    busybox,
    build,
    async ok(dir, args = [], extraEnv = {}) {
      const r = await build(dir, args, extraEnv);
      expectOk(r, `strata build ${args.join(' ')} ${dir}`);
      return r;
    },
    spawnBuild(dir, args = [], extraEnv = {}) {
      const child = spawn(STRATA_BIN, ['build', '--progress=plain', ...busybox, ...args, dir], {
        env: { ...process.env, STRATA_ROOT: env.store, ...baseEnv, ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d) => (stdout += d));
      child.stderr!.on('data', (d) => (stderr += d));
      const done = new Promise<Built>((res, rej) => {
        child.on('error', rej);
        child.on('close', (code) => res({ code: code ?? -1, stdout, stderr, steps: parsePlain(stderr) }));
      });
      return { child, done };
    },
    cli,
    async du(filters = [], extraEnv = {}) {
      const r = await cli(['du', '--format', 'json', ...filters.flatMap((f) => ['--filter', f])], extraEnv);
      return JSON.parse(r.stdout) as DuRecord[];
    },
    async assertConsistent(what: string) {
      const r = await cli(['doctor']);
      const lines = r.stdout.trim().split('\n');
      const bad = lines.filter((l) => l.startsWith('problem:') || l.startsWith('repaired:'));
      if (bad.length || !/store is consistent$/.test(lines.at(-1) ?? '')) {
        throw new Error(`strata doctor after ${what} found problems:\n${r.stdout}`);
      }
    },
    mountData(id: string) {
      return join(env.store, 'mounts', cacheMountKey(id), 'data');
    },
  };
}

/** The step whose name contains `text` (exactly one must match). */
export function step(steps: PlainStep[], text: string): PlainStep {
  const hits = steps.filter((s) => s.name.includes(text));
  if (hits.length !== 1) throw new Error(`expected one step matching ${JSON.stringify(text)}, found ${hits.length} in:\n${steps.map((s) => s.name).join('\n')}`);
  return hits[0]!;
}

/** Steps that ran, with their reasons, for assertion messages. */
export function misses(steps: PlainStep[]): string {
  return steps.filter((s) => !s.cached).map((s) => `${s.name}: ${s.miss ?? '(no reason)'}`).join('\n');
}

/** Waits (polling, bounded) until `path` exists. */
export async function waitForFile(path: string, what: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (${path})`);
    await sleep(25);
  }
}

export const readText = (p: string) => readFileSync(p, 'utf8');

/** Records of `du` whose description contains `text`. */
export function described(records: DuRecord[], text: string): DuRecord[] {
  return records.filter((r) => r.description.includes(text));
}
