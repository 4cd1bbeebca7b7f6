// Runs a command and stamps every output line with its arrival time, so a step's wall time can be
// read from when its progress lines appear (Node and docker write progress to pipes line by line).
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export interface TimedLine {
  /** Milliseconds since the process was spawned. */
  t: number;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface TimedRun {
  command: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  wallMs: number;
  lines: TimedLine[];
}

export interface TimedRunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with each line as it arrives (for --verbose echoing). */
  onLine?: (line: TimedLine) => void;
}

export function runTimed(cmd: string, args: string[], opts: TimedRunOptions = {}): Promise<TimedRun> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const lines: TimedLine[] = [];
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const pending: Record<'stdout' | 'stderr', string> = { stdout: '', stderr: '' };
    const take = (stream: 'stdout' | 'stderr') => (chunk: Buffer): void => {
      const t = performance.now() - t0;
      const parts = (pending[stream] + chunk.toString('utf8')).split('\n');
      pending[stream] = parts.pop() ?? '';
      for (const text of parts) {
        const line = { t, stream, text };
        lines.push(line);
        opts.onLine?.(line);
      }
    };
    child.stdout.on('data', take('stdout'));
    child.stderr.on('data', take('stderr'));
    let spawnError: Error | undefined;
    child.on('error', (e) => { spawnError = e; });
    child.on('close', (code, signal) => {
      const t = performance.now() - t0;
      for (const stream of ['stdout', 'stderr'] as const) {
        if (pending[stream]) lines.push({ t, stream, text: pending[stream] });
      }
      if (spawnError) lines.push({ t, stream: 'stderr', text: `spawn ${cmd}: ${spawnError.message}` });
      resolve({ command: [cmd, ...args].join(' '), code: spawnError ? 127 : code, signal, wallMs: t, lines });
    });
  });
}

/** The last `n` output lines, for error messages. */
export function tail(run: TimedRun, n = 25): string {
  return run.lines.slice(-n).map((l) => l.text).join('\n');
}

/** Throws with the output tail when the command failed. */
export function mustSucceed(run: TimedRun, what: string): TimedRun {
  if (run.code !== 0) {
    throw new Error(`${what} failed (exit ${run.code ?? run.signal}): ${run.command}\n--- last output ---\n${tail(run)}`);
  }
  return run;
}
