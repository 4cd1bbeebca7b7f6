// Small numeric and formatting helpers for the benchmark reports.
import { execFileSync } from 'node:child_process';
import { cpus, release } from 'node:os';
import { readFileSync } from 'node:fs';

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function secs(ms: number, digits = 2): string {
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(digits)} s` : '-';
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Left-aligned text table; numbers are pre-formatted by the caller. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) => r.map((c, i) => (c ?? '').padEnd(widths[i]!)).join('  ').trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

function tryExec(cmd: string, args: string[], cwd?: string): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', cwd, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** One line naming the machine and the strata commit, for the README's tables. */
export function machineLine(repoRoot: string): string {
  const cpu = cpus()[0]?.model.replace(/\s+/g, ' ').trim() ?? 'unknown CPU';
  let os = 'Linux';
  try {
    os = /PRETTY_NAME="([^"]*)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os;
  } catch { /* keep the default */ }
  // The launchers measure a private build and say what it was made from.
  let source = process.env.STRATA_BENCH_SOURCE;
  if (!source) {
    const commit = tryExec('git', ['rev-parse', '--short', 'HEAD'], repoRoot) ?? 'unknown';
    const dirty = tryExec('git', ['status', '--porcelain', 'src'], repoRoot) ? ' + uncommitted changes in src/' : '';
    source = `strata ${commit}${dirty}`;
  }
  return `${cpus().length} × ${cpu}, ${os}, kernel ${release()}, Node ${process.version}; ${source}`;
}
