// Build history: one row per build and per step, with what went into each step's key, so that
// `strata explain` can name the input that changed since the nearest earlier build.
import type { Store } from './store.js';
import { pidAlive } from './store.js';

export interface RecordedStep {
  vertex: { stage: string; stepLabel: string; instruction: string; location?: { line: number } };
  result: { key: string; cached: boolean; reason: string; durationMs: number; inputs: unknown };
}

export interface BuildRecord {
  id: string;
  started: number;
  finished: number;
  dockerfile: string;
  context: string;
  target: string;
  args: Record<string, string>;
  status: string;
  steps: RecordedStep[];
}

/** Marks a build as running (with our pid) so prune and GC leave what it touches alone. */
export function startBuild(store: Store, b: { id: string; started: number; dockerfile: string; context: string; target: string; args: Record<string, string> }): void {
  store.db
    .prepare('INSERT OR REPLACE INTO builds(id,started,finished,dockerfile,context,target,args,status,pid) VALUES (?,?,NULL,?,?,?,?,?,?)')
    .run(b.id, b.started, b.dockerfile, b.context, b.target, JSON.stringify(b.args), 'running', process.pid);
}

/** Start time of the oldest build still running in a live process (undefined: none). */
export function oldestActiveBuild(store: Store): number | undefined {
  const rows = store.db.prepare("SELECT started, pid FROM builds WHERE status='running'").all() as { started: number; pid: number | null }[];
  let oldest: number | undefined;
  for (const r of rows) {
    if (r.pid === null || !pidAlive(r.pid)) continue;
    if (oldest === undefined || r.started < oldest) oldest = r.started;
  }
  return oldest;
}

export function recordBuild(store: Store, b: BuildRecord): void {
  const insertBuild = store.db.prepare(
    'INSERT OR REPLACE INTO builds(id,started,finished,dockerfile,context,target,args,status,pid) VALUES (?,?,?,?,?,?,?,?,?)',
  );
  const insertStep = store.db.prepare(
    'INSERT OR REPLACE INTO build_steps(build_id,idx,stage,step_label,instruction,line,key,cached,reason,duration_ms,inputs) VALUES (?,?,?,?,?,?,?,?,?,?,?)',
  );
  // A step's file list can be large (every file a COPY selects) and rarely changes between builds:
  // keep one copy per selection digest and point at it.
  // A rebuild finds the row there already: testing for it is far cheaper than writing out (or, for
  // a step whose list was never needed in this build, loading) thousands of entries again.
  const hasFiles = store.db.prepare('SELECT 1 FROM file_lists WHERE digest=?').pluck();
  const insertFiles = store.db.prepare('INSERT OR IGNORE INTO file_lists(digest, files) VALUES (?, ?)');
  const compact = (inputs: unknown): string => {
    const i = inputs as Record<string, unknown> & { filesDigest?: string };
    if (!i || typeof i !== 'object' || !i.filesDigest || !hasOwnFiles(i)) return JSON.stringify(inputs);
    if (hasFiles.get(i.filesDigest) === undefined) insertFiles.run(i.filesDigest, JSON.stringify(i.files));
    // The same text as `{ ...i, files: undefined, filesRef }`, without reading `files` (it may be
    // loaded on demand).
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(i)) if (k !== 'files') out[k] = i[k];
    out.filesRef = i.filesDigest;
    return JSON.stringify(out);
  };
  store.db.transaction(() => {
    insertBuild.run(b.id, b.started, b.finished, b.dockerfile, b.context, b.target, JSON.stringify(b.args), b.status, process.pid);
    b.steps.forEach((s, i) => {
      insertStep.run(
        b.id,
        i,
        s.vertex.stage,
        s.vertex.stepLabel,
        s.vertex.instruction,
        s.vertex.location?.line ?? null,
        s.result.key,
        s.result.cached ? 1 : 0,
        s.result.reason,
        Math.round(s.result.durationMs),
        compact(s.result.inputs),
      );
    });
  }).immediate();
}

/** Whether `files` holds a list (a loaded value, or one loaded on demand), without loading it. */
function hasOwnFiles(i: object): boolean {
  const d = Object.getOwnPropertyDescriptor(i, 'files');
  return !!d && (d.get !== undefined || !!d.value);
}
