// Reads BuildKit-style `--progress=plain` output (strata's and docker's): one record per `#N` vertex
// with its name, whether it was cached, the reported `DONE x.ys`, and when its first and last lines
// arrived (wall time measured here, to the millisecond).
import type { TimedLine } from './timed-run.js';

export interface StepTiming {
  num: number;
  name: string;
  cached: boolean;
  /** Seconds from the builder's own `#N DONE 1.2s` line. */
  doneSecs?: number;
  error?: string;
  /** Arrival of the vertex's first line, ms since spawn. */
  firstMs: number;
  /** Arrival of its DONE / CACHED / ERROR line (or last line), ms since spawn. */
  lastMs: number;
}

export interface ParsedProgress {
  steps: StepTiming[];
  /** strata: `context: read N bytes`. */
  contextBytesRead?: number;
  /** docker: the last `transferring context: 12.3MB 0.4s done`. */
  contextTransfer?: string;
}

const VERTEX_LINE = /^#(\d+) (.*)$/;
const DONE = /^DONE (\d+(?:\.\d+)?)s$/;
const CONTEXT_READ = /^context: read (\d+) bytes/;
const TRANSFER = /^transferring context: (.*)$/;

export function parsePlainProgress(lines: TimedLine[]): ParsedProgress {
  const byNum = new Map<number, StepTiming>();
  const out: ParsedProgress = { steps: [] };
  for (const line of lines) {
    const text = line.text.replace(/\r$/, '');
    const ctx = CONTEXT_READ.exec(text);
    if (ctx) {
      out.contextBytesRead = Number(ctx[1]);
      continue;
    }
    const m = VERTEX_LINE.exec(text);
    if (!m) continue;
    const num = Number(m[1]);
    const rest = m[2]!;
    let step = byNum.get(num);
    if (!step) {
      // The first line of a vertex is its name in both strata's and BuildKit's plain output.
      step = { num, name: rest, cached: false, firstMs: line.t, lastMs: line.t };
      byNum.set(num, step);
      out.steps.push(step);
      continue;
    }
    step.lastMs = line.t;
    const done = DONE.exec(rest);
    if (done) step.doneSecs = Number(done[1]);
    else if (rest === 'CACHED') step.cached = true;
    else if (rest.startsWith('ERROR')) step.error = rest;
    else {
      const tr = TRANSFER.exec(rest);
      if (tr) out.contextTransfer = tr[1];
    }
  }
  return out;
}

/** Steps that did work: not cached, excluding BuildKit's bookkeeping vertices. */
export function executedSteps(p: ParsedProgress): StepTiming[] {
  return p.steps.filter((s) => !s.cached && /^\[[^\]]*\d+\/\d+\]/.test(s.name));
}

/** `[transpile 3/3] RUN sleep 1 && ...` -> `[transpile] RUN sleep 1 && ...` shortened to `width`. */
export function shortStepName(name: string, width = 60): string {
  const s = name.replace(/^\[([^\]\s]+) \d+\/\d+\]/, '[$1]').replace(/\s+/g, ' ');
  return s.length > width ? `${s.slice(0, width - 1)}…` : s;
}
