// Runs the real `bin/strata` CLI in a child process with its own store, for end-to-end tests.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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
