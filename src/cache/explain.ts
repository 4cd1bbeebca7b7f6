// Why a step ran: its key inputs compared with the same step of the nearest earlier build of the
// same Dockerfile and target. The first input that differs is the reason, named precisely.
import type { Store } from './store.js';

/** What went into a step's key, kept per build. */
export interface StepInputs {
  /** Digest of the op definition. */
  op: string;
  /** The definition itself (command, env, workdir, user, mounts...), to name what changed. */
  def?: Record<string, unknown>;
  /** path -> `type:mode:content digest` of the files the step reads from a context. */
  files?: Record<string, string>;
  filesDigest?: string;
  /** Build args the step depends on, with their values. */
  args: Record<string, string>;
  /** Result (chain id) of each input; inputs[0] is the parent filesystem. */
  inputs: string[];
  /** `[build 3/4] COPY src/ ./` or `base image NAME@DIGEST` for each input. */
  inputNames?: string[];
  /** For image sources: NAME@DIGEST. */
  base?: string;
  /** For hits: why it is notable (a parent reran with identical output). */
  note?: string;
  /** Chain id of the step's result (not part of the key): tells whether a rerun changed anything. */
  output?: string;
  /** SOURCE_DATE_EPOCH the step's layer times are clamped to. */
  sourceDateEpoch?: number;
}

export interface PreviousStep {
  stage: string;
  stepLabel: string;
  instruction: string;
  key: string;
  inputs: StepInputs;
}

export interface PreviousBuild {
  id: string;
  steps: PreviousStep[];
  /** Builds before it, nearest first, back to the last finished one: a failed build never
   * reached its later steps, so those are compared with the last build that ran them. */
  older?: PreviousBuild[];
  /** Another machine's build, imported with its exported cache. */
  imported?: boolean;
}

const MAX_FAILED_BACK = 5;

/** The nearest earlier build of the same Dockerfile, context and target (finished or failed). */
export function findPreviousBuild(store: Store, q: { dockerfile: string; context: string; target: string; before: string }): PreviousBuild | undefined {
  const rows = store.db
    .prepare(`SELECT id, status FROM builds WHERE dockerfile=? AND context=? AND target=? AND id<>? AND status NOT IN ('running','imported') ORDER BY started DESC LIMIT ?`)
    .all(q.dockerfile, q.context, q.target, q.before, MAX_FAILED_BACK + 1) as { id: string; status: string }[];
  if (rows.length === 0) return undefined;
  const done = rows.findIndex((r) => r.status === 'done');
  const chain = (done < 0 ? rows : rows.slice(0, done + 1)).map((r) => loadBuildSteps(store, r.id));
  return { ...chain[0]!, older: chain.slice(1) };
}

export function loadBuildSteps(store: Store, id: string): PreviousBuild {
  const rows = store.db
    .prepare('SELECT stage, step_label, instruction, key, inputs FROM build_steps WHERE build_id=? ORDER BY idx')
    .all(id) as { stage: string; step_label: string; instruction: string; key: string; inputs: string }[];
  const files = store.db.prepare('SELECT files FROM file_lists WHERE digest=?').pluck();
  const expand = (text: string): StepInputs => {
    const inputs = JSON.parse(text) as StepInputs & { filesRef?: string };
    const ref = inputs.filesRef;
    if (ref && !inputs.files) {
      delete inputs.filesRef;
      // Most builds never look at the previous file lists (only misses and COPY link reuse do).
      lazyFiles(inputs, () => {
        const text = files.get(ref) as string | undefined;
        return text === undefined ? undefined : (JSON.parse(text) as Record<string, string>);
      });
    }
    return inputs;
  };
  return { id, steps: rows.map((r) => ({ stage: r.stage, stepLabel: r.step_label, instruction: r.instruction, key: r.key, inputs: expand(r.inputs) })) };
}

/**
 * Makes `inputs.files` a list loaded on its first read (then kept): an enumerable accessor, so
 * spreading and JSON.stringify see a plain list. `load` must stay valid for the object's life (a
 * statement on an open store).
 */
export function lazyFiles(inputs: StepInputs, load: () => Record<string, string> | undefined): void {
  let value: Record<string, string> | undefined;
  let loaded = false;
  Object.defineProperty(inputs, 'files', {
    enumerable: true,
    configurable: true,
    get: () => {
      if (!loaded) {
        value = load();
        loaded = true;
      }
      return value;
    },
    set: (v: Record<string, string> | undefined) => {
      value = v;
      loaded = true;
    },
  });
}

/** The same step in an earlier build: same stage and instruction, else same stage and position. */
export function matchStep(prev: PreviousBuild, cur: { stage: string; instruction: string; stepLabel: string }): PreviousStep | undefined {
  const builds = [prev, ...(prev.older ?? [])];
  const pos = position(cur.stepLabel);
  for (const b of builds) {
    const hit = b.steps.find((s) => s.stage === cur.stage && s.instruction === cur.instruction);
    if (hit) return hit;
  }
  for (const b of builds) {
    const hit = b.steps.find((s) => s.stage === cur.stage && pos !== '' && position(s.stepLabel) === pos);
    if (hit) return hit;
  }
  return undefined;
}

function position(label: string): string {
  const m = /\s(\d+)\/\d+\]$/.exec(label);
  return m ? m[1]! : '';
}

const MAX_PATHS = 20;

function listPaths(kind: string, paths: string[]): string {
  const shown = paths.slice(0, MAX_PATHS).join(', ');
  return paths.length > MAX_PATHS ? `${kind} ${shown} and ${paths.length - MAX_PATHS} more` : `${kind} ${shown}`;
}

/** Changed, added and removed paths between two file selections. */
export function fileChanges(before: Record<string, string>, after: Record<string, string>): { changed: string[]; added: string[]; removed: string[] } {
  const changed: string[] = [];
  const added: string[] = [];
  const removed: string[] = [];
  for (const [p, v] of Object.entries(after)) {
    if (!(p in before)) added.push(p);
    else if (before[p] !== v) changed.push(p);
  }
  for (const p of Object.keys(before)) if (!(p in after)) removed.push(p);
  return { changed: changed.sort(), added: added.sort(), removed: removed.sort() };
}

function describeFiles(before: Record<string, string>, after: Record<string, string>): string | undefined {
  const { changed, added, removed } = fileChanges(before, after);
  const parts: string[] = [];
  const content = (v: string) => v.split(':').slice(2).join(':');
  const modeOnly = changed.filter((p) => content(before[p]!) === content(after[p]!));
  const edited = changed.filter((p) => !modeOnly.includes(p));
  if (edited.length) parts.push(edited.length === 1 ? `${edited[0]} content changed` : listPaths('content changed:', edited));
  if (modeOnly.length) parts.push(modeOnly.length === 1 ? `${modeOnly[0]} mode or type changed` : listPaths('mode or type changed:', modeOnly));
  if (added.length) parts.push(listPaths('added:', added));
  if (removed.length) parts.push(listPaths('removed:', removed));
  return parts.length ? parts.join('; ') : undefined;
}

function envMap(env: unknown): Map<string, string> {
  const m = new Map<string, string>();
  if (Array.isArray(env)) {
    for (const e of env) {
      if (typeof e !== 'string') continue;
      const i = e.indexOf('=');
      m.set(i < 0 ? e : e.slice(0, i), i < 0 ? '' : e.slice(i + 1));
    }
  }
  return m;
}

function describeDef(before: Record<string, unknown>, after: Record<string, unknown>, args: Set<string>): string | undefined {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  const parts: string[] = [];
  for (const k of keys) {
    const a = JSON.stringify(before[k]);
    const b = JSON.stringify(after[k]);
    if (a === b) continue;
    if (k === 'env') {
      const ea = envMap(before[k]);
      const eb = envMap(after[k]);
      for (const n of [...new Set([...ea.keys(), ...eb.keys()])].sort()) {
        if (args.has(n) || ea.get(n) === eb.get(n)) continue;
        parts.push(`env ${n} changed (${ea.get(n) ?? '<unset>'} -> ${eb.get(n) ?? '<unset>'})`);
      }
    } else if (k === 'args') parts.push('command changed');
    else if (k === 'cwd') parts.push(`workdir changed (${String(before[k])} -> ${String(after[k])})`);
    else if (k === 'user') parts.push(`user changed (${String(before[k] || 'root')} -> ${String(after[k] || 'root')})`);
    else parts.push(`${k} changed`);
  }
  return parts.length ? parts.join('; ') : undefined;
}

export interface CurrentStep {
  stage: string;
  stepLabel: string;
  instruction: string;
  inputs: StepInputs;
}

/** The reason a step missed, given the previous build (undefined: there was none). */
export function explainMiss(cur: CurrentStep, prev: PreviousBuild | undefined): string {
  if (!prev) return 'no previous build';
  const p = matchStep(prev, cur);
  if (!p) return 'new step (not in the previous build)';
  if (p.instruction !== cur.instruction) return `command changed (was: ${p.instruction})`;
  const a = p.inputs;
  const b = cur.inputs;
  const reasons: string[] = [];
  const argNames = new Set([...Object.keys(a.args), ...Object.keys(b.args)]);
  for (const n of [...argNames].sort()) {
    if (a.args[n] !== b.args[n]) reasons.push(`build arg ${n} changed (${a.args[n] ?? '<unset>'} -> ${b.args[n] ?? '<unset>'})`);
  }
  if (a.sourceDateEpoch !== b.sourceDateEpoch && !argNames.has('SOURCE_DATE_EPOCH')) {
    reasons.push(`SOURCE_DATE_EPOCH changed (${a.sourceDateEpoch ?? '<unset>'} -> ${b.sourceDateEpoch ?? '<unset>'})`);
  }
  if (a.filesDigest !== b.filesDigest) {
    reasons.push(describeFiles(a.files ?? {}, b.files ?? {}) ?? 'selected files changed');
  }
  if (a.def && b.def && a.op !== b.op) {
    const d = describeDef(a.def, b.def, argNames);
    if (d) reasons.push(d);
  }
  if (reasons.length) return reasons.join('; ');
  for (let i = 0; i < b.inputs.length; i++) {
    if (a.inputs[i] === b.inputs[i]) continue;
    const name = b.inputNames?.[i];
    if (name?.startsWith('base image ')) return `${name}`;
    if (i === 0) return name ? `parent step ${name} changed` : 'parent step changed';
    return name ? `source ${name} changed` : 'an input changed';
  }
  if (a.op !== b.op) return 'step definition changed';
  return 'cache record missing (pruned, or the previous build did not finish)';
}
