// Walks the build graph from the target: each vertex's key is the digest of its definition and of
// its inputs' RESULTS (layer chains), so a parent that reruns to identical output leaves its
// children cached. Hits reuse the recorded chain; misses run (in parallel where the graph allows,
// bounded by `jobs`) and are recorded with the reason they ran.
import { StrataError } from '../errors.js';
import type { LayerInfo, Store } from '../cache/store.js';
import { digestOf } from '../graph/digest.js';
import type { Op, Vertex } from '../graph/ops.js';
import type { EventSink, VertexRef } from '../progress/events.js';
import type { Runtime } from '../executor/types.js';
import { checksumRootfsSources, type StatCache } from '../context/checksum.js';
import { ContextInputs } from './context-inputs.js';
import { BadCacheLayer, type Materializer } from './materialize.js';
import type { BaseImages } from './base-images.js';
import { formatAge } from './age.js';
import { explainMiss, lazyFiles, matchStep, type PreviousBuild, type StepInputs } from '../cache/explain.js';

export const CACHE_KEY_VERSION = 1;

export interface SolverOptions {
  store: Store;
  bases: BaseImages;
  /** Host directories of the main context ('context') and of named local contexts. */
  contextDirs: Record<string, string>;
  ignore?: (relPath: string, isDir: boolean) => boolean;
  /** The .dockerignore has `!` exceptions: ignored dirs must still be walked. */
  ignoreMayReinclude?: boolean;
  statCache?: StatCache;
  secrets: Record<string, string>;
  events: EventSink;
  jobs: number;
  compression: 'gzip' | 'zstd' | 'none';
  sourceDateEpoch?: number;
  runtime: () => Promise<Runtime>;
  buildId: string;
  signal?: AbortSignal;
  materializer: Materializer;
  /** The nearest earlier build of the same target, to name what changed on a miss. */
  previous?: PreviousBuild;
}

export type { StepInputs } from '../cache/explain.js';

export interface VertexResult {
  chain: LayerInfo[];
  key: string;
  cached: boolean;
  reason: string;
  durationMs: number;
  inputs: StepInputs;
  /** The step added a layer (false for hits too when the recorded result added none). */
  addedLayer: boolean;
  /** When this result was produced (the record's creation time for hits). */
  created?: number;
}

export function chainId(chain: LayerInfo[]): string {
  return digestOf(chain.map((l) => l.diffId));
}

class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/** A StrataError without a position gets the vertex's Dockerfile line. */
function located(e: unknown, v: Vertex): unknown {
  if (e instanceof StrataError && !e.position && v.location) {
    return new StrataError(e.code, e.message, { position: { file: v.location.file, line: v.location.line }, hint: e.hint, cause: e });
  }
  return e;
}

export class Solver {
  private readonly results = new Map<number, Promise<VertexResult>>();
  private readonly byKey = new Map<string, { vertex: Vertex; result: Promise<VertexResult> }>();
  private readonly sem: Semaphore;
  /** Key inputs of the steps that run, for their runners (a COPY links unchanged files from its previous result). */
  private readonly missInputs = new Map<number, StepInputs>();
  private readonly context: ContextInputs;
  /** The first vertex asked for (the target): what the context read-ahead walks. */
  private root?: Vertex;
  readonly steps: { vertex: Vertex; result: VertexResult }[] = [];
  /** Bytes of context file content read for checksums (0 on a warm stat cache). */
  get contextBytesRead(): number {
    return this.context.bytesRead;
  }

  constructor(private readonly o: SolverOptions) {
    this.sem = new Semaphore(Math.max(1, o.jobs));
    this.context = new ContextInputs(o);
  }

  solve(v: Vertex): Promise<VertexResult> {
    this.root ??= v;
    let p = this.results.get(v.id);
    if (!p) {
      p = this.solveVertex(v);
      this.results.set(v.id, p);
    }
    return p;
  }

  private ref(v: Vertex): VertexRef {
    return { id: v.id, name: v.stepLabel === '[internal]' ? `[internal] load metadata for ${v.instruction.replace(/^FROM /, '')}` : `${v.stepLabel} ${v.instruction}` };
  }

  private async solveVertex(v: Vertex): Promise<VertexResult> {
    const inputs = await Promise.all(v.inputs.map((i) => this.solve(i)));
    const ref = this.ref(v);
    const t0 = Date.now();
    if (v.op.kind === 'scratch') {
      return { chain: [], key: digestOf({ v: CACHE_KEY_VERSION, scratch: true }), cached: true, reason: '', durationMs: 0, inputs: { op: 'scratch', args: {}, inputs: [] }, addedLayer: false };
    }
    if (v.op.kind === 'image' || v.op.kind === 'layout') {
      this.o.events({ type: 'start', vertex: ref, time: t0 });
      let img: Awaited<ReturnType<BaseImages['resolve']>>;
      let chain: LayerInfo[];
      try {
        img = await this.o.bases.resolve(v.op);
        chain = this.o.bases.declareLayers(img);
      } catch (e) {
        this.o.events({ type: 'error', vertex: ref, time: Date.now(), message: e instanceof Error ? e.message : String(e) });
        throw located(e, v);
      }
      this.o.store.touchLayers(chain.map((l) => l.diffId));
      this.o.events({ type: 'done', vertex: ref, time: Date.now(), durationMs: Date.now() - t0 });
      return {
        chain,
        key: digestOf({ v: CACHE_KEY_VERSION, image: img.manifestDigest }),
        cached: true,
        reason: '',
        durationMs: Date.now() - t0,
        inputs: { op: v.instruction, args: {}, inputs: [], base: `${img.name}@${img.manifestDigest}`, inputNames: [`base image ${img.name} now ${img.manifestDigest}`] },
        addedLayer: false,
      };
    }
    // Checksumming the context fails for bad sources (`COPY ../x`): name the Dockerfile line.
    const stepInputs = await this.stepInputs(v, inputs).catch((e: unknown) => {
      throw located(e, v);
    });
    stepInputs.inputNames = v.inputs.map((iv, i) => (iv.op.kind === 'image' || iv.op.kind === 'layout' ? inputs[i]!.inputs.inputNames![0]! : iv.op.kind === 'scratch' ? 'scratch' : `${iv.stepLabel} ${iv.instruction}`));
    // SOURCE_DATE_EPOCH clamps the times in every layer a step makes: a result made without it (or
    // with another value) is not what this build would make. Absent, it leaves older keys as they were.
    const key = digestOf({ v: CACHE_KEY_VERSION, op: stepInputs.op, files: stepInputs.filesDigest, inputs: stepInputs.inputs, sourceDateEpoch: stepInputs.sourceDateEpoch });
    // Identical steps (same key) in several stages must share one result: two runs would record
    // two different chains under one key, and the loser's children would never hit again.
    const twin = this.byKey.get(key);
    if (twin) return this.solveTwin(v, ref, key, stepInputs, inputs, twin, t0);
    const p = this.lookupOrRun(v, ref, key, stepInputs, inputs, t0);
    this.byKey.set(key, { vertex: v, result: p });
    return p;
  }

  private async solveTwin(v: Vertex, ref: VertexRef, key: string, stepInputs: StepInputs, inputs: VertexResult[], twin: { vertex: Vertex; result: Promise<VertexResult> }, t0: number): Promise<VertexResult> {
    const tr = await twin.result;
    // A twin served from the store: look up the same record (TTL and --no-cache still apply here).
    if (tr.cached) return this.lookupOrRun(v, ref, key, stepInputs, inputs, t0);
    this.o.events({ type: 'start', vertex: ref, time: t0 });
    this.o.events({ type: 'cached', vertex: ref, time: Date.now() });
    stepInputs.note = `same step as ${twin.vertex.stepLabel} ${twin.vertex.instruction}, which ran in this build`;
    this.o.events({ type: 'status', vertex: ref, message: stepInputs.note, time: Date.now() });
    stepInputs.output = chainId(tr.chain);
    const result: VertexResult = { chain: tr.chain, key, cached: true, reason: '', durationMs: Date.now() - t0, inputs: stepInputs, addedLayer: tr.addedLayer, created: tr.created };
    this.steps.push({ vertex: v, result });
    return result;
  }

  private async lookupOrRun(v: Vertex, ref: VertexRef, key: string, stepInputs: StepInputs, inputs: VertexResult[], t0: number): Promise<VertexResult> {
    this.o.events({ type: 'start', vertex: ref, time: t0 });
    const { store } = this.o;
    let reason = '';
    if (v.noCache) reason = '--no-cache';
    else {
      const rec = store.db.prepare('SELECT chain, created FROM cache_records WHERE key=?').get(key) as { chain: string; created: number } | undefined;
      if (!rec) reason = explainMiss({ stage: v.stage, stepLabel: v.stepLabel, instruction: v.instruction, inputs: stepInputs }, this.o.previous);
      else if (v.cacheTtlMs !== undefined && store.now() - rec.created > v.cacheTtlMs) {
        reason = `expired (cached ${formatAge(store.now() - rec.created)} ago, ttl ${formatAge(v.cacheTtlMs)})`;
      } else {
        const chain = (JSON.parse(rec.chain) as string[]).map((d) => store.layer(d));
        if (chain.every((l): l is LayerInfo => !!l && this.o.materializer.available(l))) {
          store.db.prepare('UPDATE cache_records SET last_used=? WHERE key=?').run(store.now(), key);
          store.touchLayers(chain.map((l) => l.diffId));
          this.o.events({ type: 'cached', vertex: ref, time: Date.now() });
          const rerun = v.inputs.findIndex((iv, i) => iv.op.kind !== 'image' && iv.op.kind !== 'layout' && iv.op.kind !== 'scratch' && !inputs[i]!.cached);
          if (rerun >= 0) {
            // The key holds the parent's chain, so a hit after a parent rerun means identical output;
            // for a COPY --from source, compare its result with the previous build's.
            const identical = rerun === 0 || this.sameOutputAsBefore(v.inputs[rerun]!, inputs[rerun]!);
            stepInputs.note = identical
              ? `${stepInputs.inputNames![rerun]} reran with identical output (early cutoff)`
              : `${stepInputs.inputNames![rerun]} reran; the files this step reads from it are unchanged`;
            this.o.events({ type: 'status', vertex: ref, message: stepInputs.note, time: Date.now() });
          }
          stepInputs.output = chainId(chain);
          const result: VertexResult = { chain, key, cached: true, reason: '', durationMs: Date.now() - t0, inputs: stepInputs, addedLayer: chain.length > inputs[0]!.chain.length, created: rec.created };
          this.steps.push({ vertex: v, result });
          return result;
        }
        reason = 'cached layers are missing from the store';
      }
    }
    this.o.events({ type: 'miss', vertex: ref, reason, time: Date.now() });
    this.missInputs.set(v.id, stepInputs);
    const layer = await this.sem.run(async () => {
      const made = await this.execute(v, inputs.map((i) => i.chain), ref);
      // COPY checks its sources itself, beside its commit (runCopy's afterCopy).
      if (stepInputs.filesDigest !== undefined && v.op.kind !== 'copy') {
        await this.context.verify(v, stepInputs).catch((e: unknown) => {
          this.o.events({ type: 'error', vertex: ref, time: Date.now(), message: e instanceof Error ? e.message : String(e) });
          throw e;
        });
      }
      return made;
    });
    const chain = layer ? [...inputs[0]!.chain, layer] : inputs[0]!.chain;
    stepInputs.output = chainId(chain);
    store.db
      .prepare(
        'INSERT INTO cache_records(key,chain,created,last_used,build_id,description,layer) VALUES (?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET chain=excluded.chain, created=excluded.created, last_used=excluded.last_used, build_id=excluded.build_id, layer=excluded.layer',
      )
      .run(key, JSON.stringify(chain.map((l) => l.diffId)), store.now(), store.now(), this.o.buildId, `${v.stepLabel} ${v.instruction}`, layer?.diffId ?? null);
    const durationMs = Date.now() - t0;
    this.o.events({ type: 'done', vertex: ref, time: Date.now(), durationMs });
    const result: VertexResult = { chain, key, cached: false, reason, durationMs, inputs: stepInputs, addedLayer: !!layer, created: store.now() };
    this.steps.push({ vertex: v, result });
    return result;
  }

  /** Whether a step that reran in this build produced the result it had in the previous build. */
  private sameOutputAsBefore(v: Vertex, r: VertexResult): boolean {
    const prev = this.o.previous && matchStep(this.o.previous, { stage: v.stage, instruction: v.instruction, stepLabel: v.stepLabel });
    return !!prev?.inputs.output && prev.inputs.output === chainId(r.chain);
  }

  private async stepInputs(v: Vertex, inputs: VertexResult[]): Promise<StepInputs> {
    const op = v.op;
    // Proxy settings reach the process but not the key: a different proxy fetches the same bytes.
    const def: Op = op.kind === 'exec' && op.proxyEnv ? { ...op, proxyEnv: undefined } : op;
    const out: StepInputs = { op: digestOf(def), def: def as unknown as Record<string, unknown>, args: v.args, inputs: inputs.map((i) => chainId(i.chain)), sourceDateEpoch: this.o.sourceDateEpoch };
    if (op.kind === 'copy' && op.from.kind === 'input') {
      // Only the selected files of the source stage count, so a change elsewhere in it does not
      // bust this step. A chain never changes, so its selection checksum is cached by chain id.
      const chain = inputs[op.from.index]!.chain;
      const sel = await this.selectionChecksum(chain, op.sources, op.excludes, op.parents);
      out.inputs[op.from.index] = `files:${sel.digest}`;
      out.files = sel.files;
      out.filesDigest = sel.digest;
    }
    const ctx = await this.context.checksum(v);
    if (ctx) {
      lazyFiles(out, ctx.files);
      out.filesDigest = ctx.digest;
    }
    return out;
  }

  private async selectionChecksum(chain: LayerInfo[], sources: string[], excludes: string[], parents: boolean): Promise<{ digest: string; files: Record<string, string> }> {
    const { store } = this.o;
    const key = digestOf({ chain: chainId(chain), sources, excludes, parents });
    const row = store.db.prepare('SELECT digest, files FROM selection_cache WHERE key=?').get(key) as { digest: string; files: string } | undefined;
    if (row) return { digest: row.digest, files: JSON.parse(row.files) as Record<string, string> };
    await this.o.materializer.unpackChain(chain);
    const { withChain } = await import('./mounts.js');
    const r = await withChain(store, chain, (merged) => checksumRootfsSources({ root: merged, sources, excludes, parents }));
    const files: Record<string, string> = {};
    for (const f of r.files) files[f.path] = `${f.type}:${f.mode.toString(8)}:${f.contentDigest ?? ''}`;
    store.db.prepare('INSERT OR REPLACE INTO selection_cache(key,digest,files) VALUES (?,?,?)').run(key, r.digest, JSON.stringify(files));
    return { digest: r.digest, files };
  }

  private async execute(v: Vertex, inputs: LayerInfo[][], ref: VertexRef): Promise<LayerInfo | undefined> {
    const commit = { compression: this.o.compression, sourceDateEpoch: this.o.sourceDateEpoch };
    const op = v.op;
    try {
      // Hits only needed their layers to be obtainable; a step that runs needs them on disk
      // (inside the try: a bad base layer fails this step, naming its line).
      for (const c of inputs) await this.o.materializer.unpackChain(c);
      // Step runners (and the executor, overlay and copy code under them) load when a step runs:
      // a fully cached build never needs them.
      switch (op.kind) {
        case 'exec': {
          // The main thread waits for the container: time to read the context of later steps.
          if (this.root) this.context.ahead(this.root);
          const { runExec } = await import('./exec-step.js');
          return await runExec(v, op, inputs, {
            store: this.o.store,
            runtime: await this.o.runtime(),
            contextDirs: this.o.contextDirs,
            secrets: this.o.secrets,
            commit,
            log: (stream, data) => this.o.events({ type: 'log', vertex: ref, stream, data, time: Date.now() }),
            signal: this.o.signal,
            buildId: this.o.buildId,
            ignore: this.o.ignore,
            ignoreMayReinclude: this.o.ignoreMayReinclude,
          });
        }
        case 'copy': {
          const { runCopy } = await import('./file-steps.js');
          return await runCopy(v, op, inputs, { store: this.o.store, contextDirs: this.o.contextDirs, ignore: this.o.ignore, ignoreMayReinclude: this.o.ignoreMayReinclude, commit, history: { previous: this.o.previous, inputs: this.missInputs.get(v.id) }, selected: this.context.copySelection(v), afterCopy: (unread) => this.context.verifyCopy(v, this.missInputs.get(v.id)!, unread) });
        }
        case 'mkdir': {
          const { runMkdir } = await import('./file-steps.js');
          return await runMkdir(op, inputs, { store: this.o.store, contextDirs: this.o.contextDirs, commit });
        }
        default:
          throw new Error(`unexpected op ${op.kind}`);
      }
    } catch (e) {
      this.o.events({ type: 'error', vertex: ref, time: Date.now(), message: e instanceof Error ? e.message : String(e) });
      // A bad imported-cache layer stays itself: the build retries without those records.
      if (e instanceof BadCacheLayer) throw e;
      if (e instanceof StrataError && !e.position && v.location) {
        throw new StrataError(e.code, e.message, { position: { file: v.location.file, line: v.location.line }, hint: e.hint, cause: e });
      }
      throw e;
    }
  }
}
