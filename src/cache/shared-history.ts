// Build history that travels with an exported cache. Job B on a fresh machine has no build of its
// own to compare with, so without it every miss would read "no previous build"; with job A's step
// inputs imported, job B's misses name the input that changed since job A (a file, an arg...).
import { relative } from 'node:path';
import { loadBuildSteps, type PreviousBuild, type PreviousStep, type StepInputs } from './explain.js';
import type { Store } from './store.js';

export interface ExportedBuild {
  /** The build's id in the exporting store. */
  id: string;
  started: number;
  /** The Dockerfile's path relative to the context (`Dockerfile`, `docker/app.Dockerfile`). */
  dockerfile: string;
  target: string;
  steps: PreviousStep[];
  /** Which export wrote it (the index keeps the builds of the exports it keeps). */
  export?: string;
}

/** Past this many file entries in one build, file lists are left out (the index stays small). */
const MAX_FILE_ENTRIES = 50_000;

/** The Dockerfile as a build of the same project on another machine names it. */
export function dockerfileInContext(dockerfile: string, context: string): string {
  const rel = relative(context, dockerfile);
  return rel === '' || rel.startsWith('..') ? dockerfile.split('/').pop() ?? dockerfile : rel;
}

function trimFiles(steps: PreviousStep[]): PreviousStep[] {
  const entries = steps.reduce((n, s) => n + (s.inputs.files ? Object.keys(s.inputs.files).length : 0), 0);
  if (entries <= MAX_FILE_ENTRIES) return steps;
  return steps.map((s) => ({ ...s, inputs: { ...s.inputs, files: undefined } }));
}

/** The steps of a build being exported, as the solver recorded them. */
export function exportedBuild(
  b: { id: string; started: number; dockerfile: string; context: string; target: string },
  steps: { vertex: { stage: string; stepLabel: string; instruction: string }; result: { key: string; inputs: StepInputs } }[],
): ExportedBuild {
  return {
    id: b.id,
    started: b.started,
    dockerfile: dockerfileInContext(b.dockerfile, b.context),
    target: b.target,
    steps: trimFiles(
      steps.map((s) => ({ stage: s.vertex.stage, stepLabel: s.vertex.stepLabel, instruction: s.vertex.instruction, key: s.result.key, inputs: s.result.inputs })),
    ),
  };
}

/** The newest finished build of each Dockerfile and target in the store (for `strata cache export`). */
export function latestBuilds(store: Store, limit = 5): ExportedBuild[] {
  const rows = store.db
    .prepare(
      `SELECT id, started, dockerfile, context, target FROM builds b WHERE status='done' AND started = (
         SELECT max(started) FROM builds c WHERE c.status='done' AND c.dockerfile=b.dockerfile AND c.context=b.context AND c.target=b.target)
       ORDER BY started DESC LIMIT ?`,
    )
    .all(limit) as { id: string; started: number; dockerfile: string; context: string; target: string }[];
  return rows.map((r) => ({
    id: r.id,
    started: r.started,
    dockerfile: dockerfileInContext(r.dockerfile, r.context),
    target: r.target,
    steps: trimFiles(loadBuildSteps(store, r.id).steps),
  }));
}

/** Keeps each imported build once, as status `imported`, for `findImportedBuild`. */
export function importBuilds(store: Store, builds: ExportedBuild[], origin: string): number {
  const insBuild = store.db.prepare(
    "INSERT OR IGNORE INTO builds(id,started,finished,dockerfile,context,target,args,status,pid) VALUES (?,?,?,?,?,?,'{}','imported',NULL)",
  );
  const insStep = store.db.prepare(
    'INSERT OR REPLACE INTO build_steps(build_id,idx,stage,step_label,instruction,line,key,cached,reason,duration_ms,inputs) VALUES (?,?,?,?,?,NULL,?,1,?,0,?)',
  );
  const insFiles = store.db.prepare('INSERT OR IGNORE INTO file_lists(digest, files) VALUES (?, ?)');
  let added = 0;
  store.db
    .transaction(() => {
      for (const b of builds) {
        const id = `imported-${b.id}`;
        if (insBuild.run(id, b.started, b.started, b.dockerfile, origin, b.target).changes === 0) continue;
        added++;
        b.steps.forEach((s, i) => {
          let inputs: StepInputs & { filesRef?: string } = s.inputs;
          if (inputs.files && inputs.filesDigest) {
            insFiles.run(inputs.filesDigest, JSON.stringify(inputs.files));
            inputs = { ...inputs, files: undefined, filesRef: inputs.filesDigest };
          }
          insStep.run(id, i, s.stage, s.stepLabel, s.instruction, s.key, `imported from ${origin}`, JSON.stringify(inputs));
        });
      }
    })
    .immediate();
  return added;
}

/** The newest imported build of the same Dockerfile (relative to its context) and target. */
export function findImportedBuild(store: Store, q: { dockerfile: string; context: string; target: string }): PreviousBuild | undefined {
  const row = store.db
    .prepare("SELECT id FROM builds WHERE status='imported' AND dockerfile=? AND target=? ORDER BY started DESC LIMIT 1")
    .get(dockerfileInContext(q.dockerfile, q.context), q.target) as { id: string } | undefined;
  return row ? { ...loadBuildSteps(store, row.id), imported: true } : undefined;
}

/** The history of this export plus the still-kept builds of earlier ones, newest per Dockerfile and target. */
export function mergeBuilds(old: ExportedBuild[] | undefined, fresh: ExportedBuild[], exportId: string, keepExports: Set<string>): ExportedBuild[] {
  const out = new Map<string, ExportedBuild>();
  const all = [...fresh.map((b) => ({ ...b, export: exportId })), ...(old ?? []).filter((b) => b.export !== undefined && keepExports.has(b.export))];
  for (const b of all.sort((x, y) => y.started - x.started)) {
    const k = `${b.dockerfile}\n${b.target}`;
    if (!out.has(k)) out.set(k, b);
  }
  return [...out.values()];
}
