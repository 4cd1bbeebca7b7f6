// Build history: one row per build and per step, with what went into each step's key, so that
// `strata explain` can name the input that changed since the nearest earlier build.
import { StrataError } from '../errors.js';
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

/** How many builds the history keeps: per Dockerfile, context and target, and in all. */
export interface HistoryLimits {
  perProject: number;
  total: number;
}

/**
 * STRATA_HISTORY_KEEP (per Dockerfile, context and target; default 20: well above the 6 builds
 * `explain` walks back over failed ones) and STRATA_HISTORY_MAX (in all; default 200, which bounds
 * the history of CI jobs that build from a new directory each time).
 */
export function historyLimits(env: NodeJS.ProcessEnv = process.env): HistoryLimits {
  const read = (name: string, dflt: number): number => {
    const text = env[name];
    if (text === undefined || text === '') return dflt;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) {
      throw new StrataError('BAD_HISTORY_LIMIT', `${name}=${text} is not a whole number of builds (1 or more)`, {
        hint: `set ${name} to a count such as ${dflt}, or unset it for the default`,
      });
    }
    return n;
  };
  return { perProject: read('STRATA_HISTORY_KEEP', 20), total: read('STRATA_HISTORY_MAX', 200) };
}

/**
 * Drops the builds beyond the limits, oldest first (imported builds count apart from local ones),
 * with their steps and the file lists no remaining step points at. Builds still running in a
 * live process stay. Without this, every build with a changed context adds a file list (tens of
 * bytes per file) to the index for good. Returns the number of builds dropped.
 */
export function pruneHistory(store: Store, limits: HistoryLimits = historyLimits()): number {
  const rows = store.db
    .prepare(
      `SELECT id, status, pid FROM (
         SELECT id, status, pid,
           ROW_NUMBER() OVER (PARTITION BY dockerfile, context, target, status = 'imported' ORDER BY started DESC, id DESC) AS in_project,
           ROW_NUMBER() OVER (ORDER BY started DESC, id DESC) AS in_all
         FROM builds)
       WHERE in_project > ? OR in_all > ?`,
    )
    .all(limits.perProject, limits.total) as { id: string; status: string; pid: number | null }[];
  const drop = rows.filter((r) => !(r.status === 'running' && r.pid !== null && pidAlive(r.pid))).map((r) => r.id);
  if (drop.length === 0) return 0;
  const stepsOf = store.db.prepare('SELECT inputs FROM build_steps WHERE build_id=?').pluck();
  const delSteps = store.db.prepare('DELETE FROM build_steps WHERE build_id=?');
  const delBuild = store.db.prepare('DELETE FROM builds WHERE id=?');
  // A list is named by the digest of its selection; a step names it as filesRef (history.ts) or
  // filesDigest. Only the dropped steps' lists can have lost their last reference.
  const stillNamed = store.db.prepare('SELECT 1 FROM build_steps WHERE instr(inputs, ?) > 0 LIMIT 1').pluck();
  // A build that finds its context selection unchanged (stat_selections) reads that selection's
  // list from here, maybe while this runs in another process: those lists stay.
  const current = store.db.prepare('SELECT 1 FROM stat_selections WHERE digest=? LIMIT 1').pluck();
  const delList = store.db.prepare('DELETE FROM file_lists WHERE digest=?');
  store.db
    .transaction(() => {
      const lists = new Set<string>();
      for (const id of drop) {
        for (const text of stepsOf.all(id) as string[]) {
          for (const m of text.matchAll(/"files(?:Ref|Digest)":"(sha256:[0-9a-f]{64})"/g)) lists.add(m[1]!);
        }
        delSteps.run(id);
        delBuild.run(id);
      }
      for (const digest of lists) if (stillNamed.get(`"${digest}"`) === undefined && current.get(digest) === undefined) delList.run(digest);
    })
    .immediate();
  return drop.length;
}
