// Shared pieces of the cache end-to-end tests: a store per test file, builds through the real CLI
// with `--progress=plain`, and parsers for its progress output and `strata explain --format json`.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, expectOk, type RunResult } from '../build/harness.js';
import { busyboxLayout } from '../helpers/base-images.js';
import { parsePlainSteps, type PlainStep } from '../control/support.js';

export { StrataEnv, expectOk, type RunResult };

export type { PlainStep };

export interface BuildOutcome extends RunResult {
  steps: PlainStep[];
  /** Instruction steps only (no `[internal]` metadata loads). */
  instructions: PlainStep[];
  contextBytesRead: number;
  digest: string;
}

/** Every vertex of the plain progress output (the parser the cache-control tests use too). */
export const parsePlain = parsePlainSteps;

export interface CacheTestEnv {
  env: StrataEnv;
  /** `--build-context busybox=oci-layout://DIR:latest` */
  busybox: string[];
  build(dir: string, args?: string[], extraEnv?: Record<string, string>): Promise<BuildOutcome>;
  /** A build that must succeed. */
  ok(dir: string, args?: string[], extraEnv?: Record<string, string>): Promise<BuildOutcome>;
  explain(id?: string): Promise<ExplainJson>;
}

export interface ExplainStep {
  stage: string;
  step: string;
  instruction: string;
  line: number | null;
  cached: boolean;
  reason: string;
  note: string;
  duration_ms: number;
  key: string;
}

export interface ExplainJson {
  build: { id: string; time: string; target: string; status: string; args: Record<string, string> };
  steps: ExplainStep[];
}

export async function cacheEnv(name: string): Promise<CacheTestEnv> {
  const env = new StrataEnv(`strata-cache-${name}-`);
  const busybox = ['--build-context', `busybox=oci-layout://${await busyboxLayout()}:latest`];
  const build = async (dir: string, args: string[] = [], extraEnv: Record<string, string> = {}): Promise<BuildOutcome> => {
    const r = await env.strata(['build', '--progress=plain', ...busybox, ...args, dir], { env: extraEnv });
    const steps = parsePlain(r.stderr);
    const read = /^context: read (\d+) bytes$/m.exec(r.stderr);
    return {
      ...r,
      steps,
      instructions: steps.filter((s) => !s.name.startsWith('[internal]')),
      contextBytesRead: read ? Number(read[1]) : -1,
      digest: r.stdout.trim().split('\n').pop() ?? '',
    };
  };
  return {
    env,
    busybox,
    build,
    async ok(dir, args = [], extraEnv = {}) {
      const r = await build(dir, args, extraEnv);
      expectOk(r, `strata build ${args.join(' ')} ${dir}`);
      return r;
    },
    async explain(id?: string) {
      const r = expectOk(await env.strata(['explain', ...(id ? [id] : []), '--format', 'json']), 'strata explain');
      return JSON.parse(r.stdout) as ExplainJson;
    },
  };
}

/** The step whose name contains `text` (exactly one must match). */
export function step<T extends { name?: string; step?: string; instruction?: string }>(steps: T[], text: string): T {
  const hits = steps.filter((s) => (s.name ?? `${s.step} ${s.instruction}`).includes(text));
  if (hits.length !== 1) {
    throw new Error(`expected one step matching ${JSON.stringify(text)}, found ${hits.length} in:\n${steps.map((s) => s.name ?? `${s.step} ${s.instruction}`).join('\n')}`);
  }
  return hits[0]!;
}

/** Readable list of steps that were not cached, for assertion messages. */
export function misses(steps: PlainStep[]): string {
  return steps.filter((s) => !s.cached).map((s) => `${s.name}: ${s.miss ?? '(no reason)'}`).join('\n');
}

/** Lines in every cache mount's `log` file of the store (a RUN appends to it each time it runs). */
export function cacheMountLines(store: string, file = 'log'): number {
  const mounts = join(store, 'mounts');
  if (!existsSync(mounts)) return 0;
  let n = 0;
  for (const d of readdirSync(mounts)) {
    const p = join(mounts, d, 'data', file);
    if (existsSync(p)) n += readFileSync(p, 'utf8').split('\n').filter(Boolean).length;
  }
  return n;
}

/** Overlay mount points under `dir` in this mount namespace. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' ') ?? '')
    .filter((mp) => mp === dir || mp.startsWith(dir + '/'));
}
