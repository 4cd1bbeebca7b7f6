// Per-step breakdowns of several runs of the same build, from their plain progress output.
import { parsePlainProgress, shortStepName, type ParsedProgress } from './progress.js';
import { median, secs, table } from './stats.js';
import type { TimedRun } from './timed-run.js';

export interface MeasuredBuild {
  run: TimedRun;
  progress: ParsedProgress;
}

export function measure(run: TimedRun): MeasuredBuild {
  return { run, progress: parsePlainProgress(run.lines) };
}

/** A Dockerfile step (`[stage n/m] ...`) that did work: not cached, not BuildKit's FROM vertex. */
export function ranSteps(b: MeasuredBuild): string[] {
  return b.progress.steps
    .filter((s) => !s.cached && /^\[[^\]]*\d+\/\d+\]/.test(s.name) && !/^\[[^\]]*\] FROM /.test(s.name))
    .map((s) => shortStepName(s.name, 200));
}

/**
 * One row per vertex name (in first-seen order): in how many runs it did work, the median `span`
 * (wall time between its first and last progress line as they arrived here: strata prints a step's
 * name when it starts; BuildKit prints a vertex's lines only once it has finished, so its span is
 * about 0 and its DONE column is the figure to read), the median of the builder's own DONE; then
 * the time before the first vertex line (start-up, planning) and after the last (export, exit).
 */
export function stepTable(builds: MeasuredBuild[], nameWidth = 64): string {
  const names: string[] = [];
  const walls = new Map<string, number[]>();
  const dones = new Map<string, number[]>();
  const cachedCount = new Map<string, number>();
  const before: number[] = [];
  const after: number[] = [];
  for (const b of builds) {
    const steps = b.progress.steps;
    if (steps.length) {
      before.push(Math.min(...steps.map((s) => s.firstMs)));
      after.push(b.run.wallMs - Math.max(...steps.map((s) => s.lastMs)));
    }
    for (const s of steps) {
      // The registry port differs between runs; so does nothing else in a step's name.
      const key = shortStepName(s.name, 500).replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT');
      if (!walls.has(key)) {
        names.push(key);
        walls.set(key, []);
        dones.set(key, []);
        cachedCount.set(key, 0);
      }
      if (s.cached) cachedCount.set(key, cachedCount.get(key)! + 1);
      walls.get(key)!.push(s.lastMs - s.firstMs);
      if (s.doneSecs !== undefined) dones.get(key)!.push(s.doneSecs * 1000);
    }
  }
  const n = builds.length;
  const rows = names.map((k) => {
    const c = cachedCount.get(k)!;
    const seen = walls.get(k)!.length;
    const state = c === seen ? 'CACHED' : c === 0 ? 'ran' : `ran ${seen - c}/${seen}`;
    const label = k.length > nameWidth ? `${k.slice(0, nameWidth - 1)}…` : k;
    return [label, state, secs(median(walls.get(k)!)), dones.get(k)!.length ? secs(median(dones.get(k)!), 1) : '-'];
  });
  rows.push(['(start → first step line)', '', secs(median(before)), '']);
  rows.push(['(last step line → exit: export, store)', '', secs(median(after)), '']);
  rows.push([`total (median of ${n})`, '', secs(median(builds.map((b) => b.run.wallMs))), '']);
  return table(['step', 'state', 'span', 'DONE'], rows);
}
