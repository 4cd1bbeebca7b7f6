// Runs the real `bin/strata` CLI in a child process with its own store, for end-to-end tests.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeTree } from '../helpers/mounts.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const STRATA_BIN = join(REPO_ROOT, 'bin', 'strata');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string>; input?: string } = {}): Promise<RunResult> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', rej);
    child.on('close', (code) => res({ code: code ?? -1, stdout, stderr }));
    // A child that exits without reading its stdin must not fail the caller with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

export class StrataEnv {
  readonly root: string;
  readonly store: string;

  constructor(name = 'strata-e2e-') {
    this.root = mkdtempSync(join(tmpdir(), name));
    this.store = join(this.root, 'store');
  }

  strata(args: string[], opts: { cwd?: string; env?: Record<string, string>; input?: string } = {}): Promise<RunResult> {
    return run(STRATA_BIN, args, { ...opts, env: { STRATA_ROOT: this.store, ...opts.env } });
  }

  /** `strata build CONTEXT --progress plain ARGS...` */
  build(contextDir: string, args: string[] = [], opts: { cwd?: string; env?: Record<string, string>; input?: string } = {}): Promise<RunResult> {
    return this.strata(['build', contextDir, '--progress', 'plain', ...args], opts);
  }

  /** Removes the store and every file the test wrote under this env (unmounting imported layer images). */
  cleanup(): void {
    removeTree(this.root);
  }

  /** Writes a build context from a map of relative path -> content. */
  context(name: string, files: Record<string, string>): string {
    const dir = join(this.root, name);
    for (const [p, content] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, p)), { recursive: true });
      writeFileSync(join(dir, p), content);
    }
    mkdirSync(dir, { recursive: true });
    return dir;
  }
}

export function expectOk(r: RunResult, what: string): RunResult {
  if (r.code !== 0) throw new Error(`${what} failed with exit code ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return r;
}

// ---- helpers for the build end-to-end tests ---------------------------------------------------

/** `--build-context busybox=oci-layout://DIR:latest`, so `FROM busybox` needs no registry. */
export async function busyboxArgs(): Promise<string[]> {
  const { busyboxLayout } = await import('../helpers/base-images.js');
  return ['--build-context', `busybox=oci-layout://${await busyboxLayout()}:latest`];
}

/** One vertex of `--progress plain` output. */
export interface ProgressStep {
  num: number;
  name: string;
  cached: boolean;
  /** The cache-miss reason, when the step ran. */
  miss?: string;
  done: boolean;
  error?: string;
  /** Lines the step printed (without the `#N 0.123 ` prefix). */
  logs: string[];
  /** Status lines other than CACHED / miss / DONE / ERROR / logs (e.g. the early cutoff note). */
  notes: string[];
}

/** Parses BuildKit-style plain progress (`#N name`, `#N CACHED`, `#N cache miss: ...`, `#N DONE`). */
export function parseProgress(stderr: string): ProgressStep[] {
  const steps = new Map<number, ProgressStep>();
  const lines = stderr.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^#(\d+) (.*)$/.exec(lines[i]!);
    if (!m) continue;
    const num = Number(m[1]);
    const rest = m[2]!;
    let s = steps.get(num);
    if (!s) {
      // The first line of a vertex (after a blank line) is its name.
      s = { num, name: rest, cached: false, done: false, logs: [], notes: [] };
      steps.set(num, s);
      continue;
    }
    if (rest === 'CACHED') s.cached = true;
    else if (rest.startsWith('cache miss: ')) s.miss = rest.slice('cache miss: '.length);
    else if (/^DONE \d/.test(rest)) s.done = true;
    else if (rest.startsWith('ERROR: ')) s.error = rest.slice('ERROR: '.length);
    else {
      const log = /^\d+\.\d{3} (.*)$/.exec(rest);
      if (log) s.logs.push(log[1]!);
      else s.notes.push(rest);
    }
  }
  return [...steps.values()];
}

/** Steps that are Dockerfile instructions (not `[internal]` base-image loads). */
export function instructionSteps(steps: ProgressStep[]): ProgressStep[] {
  return steps.filter((s) => !s.name.startsWith('[internal]'));
}

/** The digest `strata build` prints as its last stdout line. */
export function printedDigest(r: RunResult): string {
  const d = r.stdout.trim().split('\n').pop() ?? '';
  if (!/^sha256:[0-9a-f]{64}$/.test(d)) throw new Error(`strata build printed no digest: ${JSON.stringify(r.stdout)}`);
  return d;
}

export interface LayoutManifest {
  manifestDigest: string;
  manifest: { config: { digest: string }; layers: { digest: string; mediaType: string }[] };
  // The image config as written: `config` holds the runtime config (Docker field names).
  config: {
    created?: string;
    architecture?: string;
    os?: string;
    config?: Record<string, unknown> & { Env?: string[]; OnBuild?: string[] };
    rootfs: { diff_ids: string[] };
    history?: { created?: string; created_by?: string; empty_layer?: boolean }[];
  };
  blobPath(digest: string): string;
}

/** Reads an OCI layout directly (plain JSON, independent of strata's own reader). */
export function readLayout(dir: string, tag?: string): LayoutManifest {
  const blobPath = (d: string) => join(dir, 'blobs', ...d.split(':'));
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const entry = tag === undefined ? index.manifests[0] : index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!entry) throw new Error(`${dir}: no manifest tagged ${tag}`);
  const manifest = JSON.parse(readFileSync(blobPath(entry.digest), 'utf8')) as LayoutManifest['manifest'];
  const config = JSON.parse(readFileSync(blobPath(manifest.config.digest), 'utf8')) as LayoutManifest['config'];
  return { manifestDigest: entry.digest, manifest, config, blobPath };
}

/** Entry names of every layer of the image (GNU tar reads the gzip layers). */
export async function layerEntries(img: LayoutManifest): Promise<string[][]> {
  const out: string[][] = [];
  for (const l of img.manifest.layers) {
    const r = expectOk(await run('tar', ['-tzf', img.blobPath(l.digest)]), `tar -tzf ${l.digest}`);
    out.push(r.stdout.split('\n').filter(Boolean));
  }
  return out;
}

/** Extracts every layer of the image into one directory, in order (whiteouts are kept as files). */
export async function extractLayers(img: LayoutManifest, dest: string): Promise<void> {
  mkdirSync(dest, { recursive: true });
  for (const l of img.manifest.layers) expectOk(await run('tar', ['-xzf', img.blobPath(l.digest), '-C', dest]), `tar -xzf ${l.digest}`);
}

/** Value of `NAME=` in an Env list. */
export function envValue(env: string[] | undefined, name: string): string | undefined {
  const e = (env ?? []).find((x) => x.startsWith(`${name}=`));
  return e === undefined ? undefined : e.slice(name.length + 1);
}
