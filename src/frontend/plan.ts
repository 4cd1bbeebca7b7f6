// Instructions + build args + target -> a build graph. Stages are planned on demand from the
// target, so stages the target does not need are never resolved or built.
import posix from 'node:path/posix';
import { StrataError } from '../errors.js';
import type { ParsedDockerfile } from '../dockerfile/ast.js';
import type { Instruction, CommandLine } from '../dockerfile/instructions-types.js';
import { parseDockerfile } from '../dockerfile/parser.js';
import { toInstructions } from '../dockerfile/instructions.js';
import { ShellLexer } from '../dockerfile/shell-lexer.js';
import type { BaseImageInfo, HistoryEntry, RuntimeConfig } from '../graph/config.js';
import { cloneConfig } from '../graph/config.js';
import type { FileSource, Op, SourceOp, Vertex } from '../graph/ops.js';
import { StageScope, setEnv } from './scope.js';
import { parseMount } from './mounts.js';
import { parseDuration } from './duration.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const PROXY_ARGS = new Set(['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']);

export type NamedContext =
  | { kind: 'dir'; path: string }
  | { kind: 'layout'; dir: string; ref?: string }
  | { kind: 'image'; ref: string };

export interface PlanOptions {
  file: string;
  buildArgs: Record<string, string>;
  target?: string;
  namedContexts?: Record<string, NamedContext>;
  /** Config and history of a base image (BuildKit's metaresolver). */
  resolveBase(op: Exclude<SourceOp, { kind: 'scratch' }>): Promise<BaseImageInfo>;
  noCache?: boolean;
  noCacheFilter?: string[];
  /** Default TTL for RUN steps, and per-stage overrides. */
  cacheTtl?: { default?: string; stages?: Record<string, string> };
  platform?: { os: string; architecture: string; variant?: string };
}

export interface PlannedHistory {
  entry: HistoryEntry;
  /** Set for steps that may add a layer; the solver decides whether they did. */
  vertex?: Vertex;
}

export interface StagePlan {
  name: string;
  index: number;
  final: Vertex;
  config: RuntimeConfig;
  history: PlannedHistory[];
  /** Base history entries and layer count come from baseInfo. */
  base: BaseImageInfo;
  author?: string;
}

export interface BuildPlan {
  target: StagePlan;
  stages: StagePlan[];
  /** Every vertex the target needs, inputs before users. */
  vertices: Vertex[];
  warnings: string[];
  /** Build args that no reached ARG declared (BuildKit warns about them). */
  unusedBuildArgs: string[];
}

interface RawStage {
  index: number;
  name?: string;
  from: Extract<Instruction, { kind: 'from' }>;
  body: Instruction[];
}

export function goArch(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? '386' : process.arch;
}

export async function planBuild(parsed: ParsedDockerfile, opts: PlanOptions): Promise<BuildPlan> {
  return new Planner(parsed, opts).plan();
}

class Planner {
  private readonly lexer: ShellLexer;
  private readonly stages: RawStage[] = [];
  private readonly metaArgs = new Map<string, string | undefined>();
  private readonly planned = new Map<number, Promise<StagePlan>>();
  private readonly vertices: Vertex[] = [];
  private readonly usedBuildArgs = new Set<string>();
  private readonly warnings: string[] = [];
  private readonly imageSources = new Map<string, Vertex>();
  private nextId = 1;

  constructor(
    private readonly parsed: ParsedDockerfile,
    private readonly opts: PlanOptions,
  ) {
    this.lexer = new ShellLexer(parsed.directives.escape);
  }

  private pos(line: number) {
    return { file: this.opts.file, line };
  }

  private platformArgs(): Map<string, string> {
    const p = this.opts.platform ?? { os: 'linux', architecture: goArch() };
    const plat = `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
    return new Map([
      ['BUILDPLATFORM', plat], ['BUILDOS', p.os], ['BUILDARCH', p.architecture], ['BUILDVARIANT', p.variant ?? ''],
      ['TARGETPLATFORM', plat], ['TARGETOS', p.os], ['TARGETARCH', p.architecture], ['TARGETVARIANT', p.variant ?? ''],
    ]);
  }

  async plan(): Promise<BuildPlan> {
    const instructions = toInstructions(this.parsed);
    let current: RawStage | undefined;
    const platform = this.platformArgs();
    for (const ins of instructions) {
      if (ins.kind === 'from') {
        const fromWord = this.expandGlobal(ins.image, ins.startLine);
        current = { index: this.stages.length, name: ins.stageName?.toLowerCase(), from: { ...ins, image: fromWord }, body: [] };
        if (current.name && this.stages.some((s) => s.name === current!.name)) {
          throw new StrataError('DUPLICATE_STAGE', `duplicate stage name "${ins.stageName}"`, { position: this.pos(ins.startLine) });
        }
        this.stages.push(current);
      } else if (!current) {
        if (ins.kind !== 'arg') {
          throw new StrataError('NO_FROM', `${ins.kind.toUpperCase()} before the first FROM: only ARG may come first`, {
            position: this.pos(ins.startLine),
            hint: 'start the stage with FROM IMAGE',
          });
        }
        for (const kv of ins.args) {
          let value: string | undefined;
          if (kv.key in this.opts.buildArgs) {
            value = this.opts.buildArgs[kv.key];
            this.usedBuildArgs.add(kv.key);
          } else if (kv.value !== undefined) value = this.expandGlobal(kv.value, ins.startLine);
          else value = platform.get(kv.key);
          this.metaArgs.set(kv.key, value);
        }
      } else current.body.push(ins);
    }
    if (this.stages.length === 0) {
      throw new StrataError('NO_FROM', 'the Dockerfile has no FROM instruction', { position: { file: this.opts.file } });
    }
    for (const name of Object.keys(this.opts.cacheTtl?.stages ?? {})) {
      if (!this.stages.some((s) => s.name === name.toLowerCase() || String(s.index) === name)) {
        throw new StrataError('BAD_FLAG', `--cache-ttl ${name}=...: the Dockerfile has no stage named "${name}"`, {
          hint: `stages: ${this.stages.map((s) => s.name ?? String(s.index)).join(', ')}`,
        });
      }
    }
    let targetIndex = this.stages.length - 1;
    if (this.opts.target) {
      const t = this.opts.target.toLowerCase();
      targetIndex = this.stages.findIndex((s) => s.name === t);
      if (targetIndex < 0) {
        const names = this.stages.filter((s) => s.name).map((s) => s.name);
        throw new StrataError('NO_TARGET', `target stage "${this.opts.target}" could not be found`, {
          position: { file: this.opts.file },
          hint: names.length ? `stages in this Dockerfile: ${names.join(', ')}` : 'name a stage with FROM IMAGE AS NAME',
        });
      }
    }
    const target = await this.planStage(targetIndex);
    const stages = [...(await Promise.all([...this.planned.values()]))].sort((a, b) => a.index - b.index);
    const unused = Object.keys(this.opts.buildArgs).filter((k) => !this.usedBuildArgs.has(k) && !PROXY_ARGS.has(k));
    return { target, stages, vertices: this.vertices, warnings: this.warnings, unusedBuildArgs: unused };
  }

  private expandGlobal(word: string, line: number): string {
    const lookup = (n: string) => this.metaArgs.get(n);
    return this.expand(word, lookup, line).result;
  }

  private expand(word: string, lookup: (n: string) => string | undefined, line: number): { result: string; used: Set<string> } {
    try {
      return this.lexer.processWord(word, lookup);
    } catch (e) {
      if (e instanceof StrataError && !e.position) {
        throw new StrataError(e.code, e.message, { position: this.pos(line), hint: e.hint });
      }
      throw e;
    }
  }

  private addVertex(v: Omit<Vertex, 'id'>): Vertex {
    const vertex: Vertex = { id: this.nextId++, ...v };
    this.vertices.push(vertex);
    return vertex;
  }

  private stageByName(name: string, before: number): RawStage | undefined {
    const n = name.toLowerCase();
    const byName = this.stages.find((s) => s.name === n && s.index < before);
    if (byName) return byName;
    if (/^\d+$/.test(name)) {
      const i = Number(name);
      if (i < before) return this.stages[i];
      throw new StrataError('BAD_STAGE_REF', `stage index ${i} is not an earlier stage`, {});
    }
    return undefined;
  }

  private planStage(index: number): Promise<StagePlan> {
    let p = this.planned.get(index);
    if (!p) {
      p = this.doPlanStage(this.stages[index]!);
      this.planned.set(index, p);
    }
    return p;
  }

  /** A source vertex for an image reference, shared by every user of the same reference. */
  private imageSource(op: Exclude<SourceOp, { kind: 'scratch' }>, stage: string, line: number): Vertex {
    const key = JSON.stringify(op);
    let v = this.imageSources.get(key);
    if (!v) {
      const label = op.kind === 'image' ? op.ref : `oci-layout://${op.dir}${op.ref ? ':' + op.ref : ''}`;
      // The first line that uses the image: pull and unpack errors point at it.
      const location = { file: this.opts.file, line, endLine: line };
      v = this.addVertex({ op, inputs: [], instruction: `FROM ${label}`, location, stage, stepLabel: '[internal]', args: {}, noCache: false });
      this.imageSources.set(key, v);
    }
    return v;
  }

  private stageNoCache(name: string, index: number): boolean {
    if (this.opts.noCache) return true;
    const f = this.opts.noCacheFilter ?? [];
    return f.some((x) => x.toLowerCase() === name || x === String(index));
  }

  private async doPlanStage(raw: RawStage): Promise<StagePlan> {
    const name = raw.name ?? `stage-${raw.index}`;
    const fromWord = raw.from.image;
    let base: BaseImageInfo;
    let baseVertex: Vertex;
    let history: PlannedHistory[] = [];
    let author: string | undefined;
    const named = this.opts.namedContexts?.[fromWord];
    const parentStage = named ? undefined : this.stageByName(fromWord, raw.index);
    if (parentStage) {
      const parent = await this.planStage(parentStage.index);
      base = { config: cloneConfig(parent.config), history: [], diffIds: [] };
      baseVertex = parent.final;
      history = parent.history.map((h) => ({ ...h, entry: { ...h.entry } }));
      base = { ...base, history: parent.base.history, diffIds: parent.base.diffIds };
      author = parent.author;
    } else if (named?.kind === 'dir') {
      // A local folder as a base (buildx `--build-context NAME=DIR`, then `FROM NAME`): the stage
      // starts from the folder's files, as BuildKit's local source does; no image config comes with it.
      base = { config: {}, history: [], diffIds: [] };
      const scratch = this.addVertex({ op: { kind: 'scratch' }, inputs: [], instruction: 'FROM scratch', stage: name, stepLabel: '[internal]', args: {}, noCache: false });
      baseVertex = this.addVertex({
        op: { kind: 'copy', from: { kind: 'context', name: fromWord }, sources: ['.'], dest: '/', workdir: '/', excludes: [], parents: false, link: false, isAdd: false, heredocs: [] },
        inputs: [scratch],
        instruction: raw.from.original,
        location: { file: this.opts.file, line: raw.from.startLine, endLine: raw.from.endLine },
        stage: name,
        stepLabel: `[${name} 1/${raw.body.length + 1}]`,
        args: {},
        noCache: this.stageNoCache(name, raw.index),
      });
      history = [{ entry: { created_by: `FROM ${fromWord} (local folder) # strata`, comment: 'strata.dockerfile.v0' }, vertex: baseVertex }];
    } else if (fromWord.toLowerCase() === 'scratch' && !named) {
      base = { config: {}, history: [], diffIds: [] };
      baseVertex = this.addVertex({ op: { kind: 'scratch' }, inputs: [], instruction: 'FROM scratch', stage: name, stepLabel: '[internal]', args: {}, noCache: false });
    } else {
      let op: Exclude<SourceOp, { kind: 'scratch' }>;
      if (named?.kind === 'layout') op = { kind: 'layout', dir: named.dir, ref: named.ref };
      else if (named?.kind === 'image') op = { kind: 'image', ref: named.ref };
      else if (fromWord.startsWith('oci-layout://')) op = parseLayoutRef(fromWord.slice('oci-layout://'.length));
      else if (fromWord === '') {
        throw new StrataError('BAD_FROM', 'FROM names no image (the expansion gave an empty string)', { position: this.pos(raw.from.startLine) });
      } else op = { kind: 'image', ref: fromWord };
      try {
        base = await this.opts.resolveBase(op);
      } catch (e) {
        if (e instanceof StrataError && !e.position) {
          throw new StrataError(e.code, e.message, { position: this.pos(raw.from.startLine), hint: e.hint, cause: e });
        }
        throw e;
      }
      baseVertex = this.imageSource(op, name, raw.from.startLine);
      author = base.author;
    }
    const config = cloneConfig(base.config);
    if (!(config.Env ?? []).some((e) => e.startsWith('PATH='))) config.Env = [`PATH=${DEFAULT_PATH}`, ...(config.Env ?? [])];
    const triggers = config.OnBuild ?? [];
    delete config.OnBuild;
    const body: Instruction[] = [];
    for (const t of triggers) {
      const p = parseDockerfile(t, `${this.opts.file} (ONBUILD of ${fromWord})`);
      for (const i of toInstructions(p)) body.push({ ...i, startLine: raw.from.startLine, endLine: raw.from.endLine });
    }
    body.push(...raw.body);
    const st = new StageState(this, raw, name, config, baseVertex, this.stageNoCache(name, raw.index), body.length);
    let cmdFromBase = config.Cmd !== undefined;
    for (const ins of body) {
      if (ins.kind === 'cmd') cmdFromBase = false;
      if (ins.kind === 'entrypoint' && cmdFromBase) {
        delete config.Cmd;
        cmdFromBase = false;
      }
      await st.apply(ins, history);
    }
    return { name, index: raw.index, final: st.fs, config, history, base, author: st.author ?? author };
  }

  // Accessors for StageState (kept narrow on purpose).
  _expand = this.expand.bind(this);
  _addVertex = this.addVertex.bind(this);
  _pos = this.pos.bind(this);
  _imageSource = this.imageSource.bind(this);
  _warn(msg: string) {
    this.warnings.push(msg);
  }
  _buildArg(name: string): string | undefined {
    if (name in this.opts.buildArgs) {
      this.usedBuildArgs.add(name);
      return this.opts.buildArgs[name];
    }
    return undefined;
  }
  _metaArg(name: string): string | undefined {
    return this.metaArgs.has(name) ? this.metaArgs.get(name) : this.platformArgs().get(name);
  }
  _proxyArgs(): [string, string][] {
    return Object.entries(this.opts.buildArgs).filter(([k]) => PROXY_ARGS.has(k));
  }
  _stageRef(name: string, before: number): RawStage | undefined {
    return this.stageByName(name, before);
  }
  _planStage(i: number) {
    return this.planStage(i);
  }
  _named(name: string): NamedContext | undefined {
    return this.opts.namedContexts?.[name];
  }
  _ttl(stage: string, explicit: string | undefined, line: number, isRun: boolean): number | undefined {
    const text = explicit ?? this.opts.cacheTtl?.stages?.[stage] ?? (isRun ? this.opts.cacheTtl?.default : undefined);
    if (text === undefined) return undefined;
    try {
      return parseDuration(text, 'cache TTL');
    } catch (e) {
      if (e instanceof StrataError) throw new StrataError(e.code, e.message, { position: this.pos(line), hint: e.hint });
      throw e;
    }
  }
}

function parseLayoutRef(s: string): { kind: 'layout'; dir: string; ref?: string } {
  const at = s.indexOf('@');
  if (at >= 0) return { kind: 'layout', dir: s.slice(0, at), ref: s.slice(at + 1) };
  const colon = s.lastIndexOf(':');
  if (colon > s.lastIndexOf('/')) return { kind: 'layout', dir: s.slice(0, colon), ref: s.slice(colon + 1) };
  return { kind: 'layout', dir: s };
}

function parseNamedContextValue(v: string): NamedContext {
  if (v.startsWith('oci-layout://')) return parseLayoutRef(v.slice('oci-layout://'.length));
  if (v.startsWith('docker-image://')) return { kind: 'image', ref: v.slice('docker-image://'.length) };
  return { kind: 'dir', path: v };
}
export { parseNamedContextValue };

/** Walks one stage's instructions, updating its config and adding filesystem vertices. */
class StageState {
  readonly scope: StageScope;
  fs: Vertex;
  author?: string;
  private step = 0;
  private readonly total: number;

  constructor(
    private readonly p: Planner,
    private readonly raw: RawStage,
    private readonly name: string,
    private readonly config: RuntimeConfig,
    base: Vertex,
    private readonly noCache: boolean,
    /** Instructions in the stage, ONBUILD triggers of the base included. */
    bodyLength: number,
  ) {
    this.scope = new StageScope(config);
    this.fs = base;
    this.total = bodyLength + 1;
  }

  private label(): string {
    this.step++;
    return `[${this.name} ${this.step + 1}/${this.total}]`;
  }

  private ex(word: string, line: number, used?: Record<string, string>): string {
    const r = this.p._expand(word, this.scope.lookup, line);
    if (used) for (const n of r.used) if (this.scope.isArg(n)) used[n] = this.scope.args.get(n)!;
    return r.result;
  }

  private shell(): string[] {
    return this.config.Shell ?? ['/bin/sh', '-c'];
  }

  private commandArgs(c: CommandLine): string[] {
    return c.shellForm ? [...this.shell(), c.args.join(' ')] : [...c.args];
  }

  private fileSource(from: string | undefined, line: number, inputs: Vertex[]): FileSource {
    if (!from) return { kind: 'context', name: 'context' };
    const named = this.p._named(from);
    if (named?.kind === 'dir') return { kind: 'context', name: from };
    const push = (v: Vertex): FileSource => {
      inputs.push(v);
      return { kind: 'input', index: inputs.length - 1 };
    };
    if (named?.kind === 'layout') return push(this.p._imageSource({ kind: 'layout', dir: named.dir, ref: named.ref }, this.name, line));
    if (named?.kind === 'image') return push(this.p._imageSource({ kind: 'image', ref: named.ref }, this.name, line));
    const stage = this.p._stageRef(from, this.raw.index);
    if (stage) {
      // Resolved synchronously below through pendingStages; the vertex is filled once planned.
      const placeholder: FileSource = { kind: 'input', index: inputs.length };
      this.pendingStages.push({ index: stage.index, slot: inputs.length });
      inputs.push(this.fs);
      return placeholder;
    }
    if (from === this.name || this.raw.name === from.toLowerCase()) {
      throw new StrataError('BAD_STAGE_REF', `--from=${from} refers to the stage it is in`, { position: this.p._pos(line) });
    }
    if (from.startsWith('oci-layout://')) return push(this.p._imageSource(parseLayoutRef(from.slice(13)), this.name, line));
    return push(this.p._imageSource({ kind: 'image', ref: from }, this.name, line));
  }
  private pendingStages: { index: number; slot: number }[] = [];

  private async fillStageInputs(inputs: Vertex[]): Promise<void> {
    for (const { index, slot } of this.pendingStages) inputs[slot] = (await this.p._planStage(index)).final;
    this.pendingStages = [];
  }

  private vertex(op: Op, extraInputs: Vertex[], ins: Instruction, args: Record<string, string>, ttl?: number): Vertex {
    return this.p._addVertex({
      op,
      inputs: [this.fs, ...extraInputs],
      instruction: ins.original,
      location: { file: this.p._pos(0).file, line: ins.startLine, endLine: ins.endLine },
      stage: this.name,
      stepLabel: this.label(),
      args,
      cacheTtlMs: ttl,
      noCache: this.noCache,
    });
  }

  async apply(ins: Instruction, history: PlannedHistory[]): Promise<void> {
    const line = ins.startLine;
    const meta = (createdBy: string) => {
      this.step++;
      history.push({ entry: { created_by: createdBy, comment: 'strata.dockerfile.v0', empty_layer: true } });
    };
    switch (ins.kind) {
      case 'arg': {
        for (const kv of ins.args) {
          let value = this.p._buildArg(kv.key);
          if (value === undefined) {
            if (kv.value !== undefined) value = this.ex(kv.value, line);
            else value = this.p._metaArg(kv.key);
          }
          this.scope.args.set(kv.key, value);
        }
        meta(`ARG ${ins.args.map((a) => (a.value !== undefined ? `${a.key}=${a.value}` : a.key)).join(' ')}`);
        return;
      }
      case 'env': {
        const pairs = ins.pairs.map((kv) => [this.ex(kv.key, line), this.ex(kv.value, line)] as const);
        for (const [k, v] of pairs) setEnv(this.config, k, v);
        meta(`ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`);
        return;
      }
      case 'label': {
        const pairs = ins.pairs.map((kv) => [this.ex(kv.key, line), this.ex(kv.value, line)] as const);
        this.config.Labels = { ...(this.config.Labels ?? {}) };
        for (const [k, v] of pairs) this.config.Labels[k] = v;
        meta(`LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`);
        return;
      }
      case 'maintainer':
        this.author = ins.name;
        meta(`MAINTAINER ${ins.name}`);
        return;
      case 'workdir': {
        const used: Record<string, string> = {};
        const p = this.ex(ins.path, line, used);
        const wd = posix.resolve(this.config.WorkingDir || '/', p);
        this.config.WorkingDir = wd;
        const v = this.vertex({ kind: 'mkdir', path: wd, user: this.config.User ?? '' }, [], ins, used);
        this.fs = v;
        history.push({ entry: { created_by: `WORKDIR ${wd}`, comment: 'strata.dockerfile.v0' }, vertex: v });
        return;
      }
      case 'user':
        this.config.User = this.ex(ins.user, line);
        meta(`USER ${this.config.User}`);
        return;
      case 'expose': {
        const ports = { ...(this.config.ExposedPorts ?? {}) };
        for (const w of ins.ports) for (const port of expandPorts(this.ex(w, line), this.p._pos(line))) ports[port] = {};
        this.config.ExposedPorts = ports;
        meta(`EXPOSE ${Object.keys(ports).join(' ')}`);
        return;
      }
      case 'volume': {
        const vols = { ...(this.config.Volumes ?? {}) };
        for (const w of ins.paths) {
          const v = this.ex(w, line);
          if (v.trim() === '') throw new StrataError('BAD_VOLUME', 'VOLUME specified can not be an empty string', { position: this.p._pos(line) });
          vols[v] = {};
        }
        this.config.Volumes = vols;
        meta(`VOLUME [${ins.paths.join(' ')}]`);
        return;
      }
      case 'stopsignal':
        this.config.StopSignal = this.ex(ins.signal, line);
        meta(`STOPSIGNAL ${this.config.StopSignal}`);
        return;
      case 'shell':
        this.config.Shell = [...ins.shell];
        meta(`SHELL [${ins.shell.map((s) => JSON.stringify(s)).join(' ')}]`);
        return;
      case 'cmd':
      case 'entrypoint': {
        const args = this.commandArgs(ins.command);
        if (ins.kind === 'cmd') this.config.Cmd = args;
        else this.config.Entrypoint = args;
        if (ins.command.shellForm) this.config.ArgsEscaped = true;
        meta(`${ins.kind.toUpperCase()} ${JSON.stringify(args)}`);
        return;
      }
      case 'healthcheck': {
        if (ins.test[0] === 'NONE') this.config.Healthcheck = { Test: ['NONE'] };
        else {
          const d = (s: string | undefined, what: string) => (s === undefined ? undefined : parseDuration(s, `HEALTHCHECK ${what}`) * 1e6);
          this.config.Healthcheck = {
            Test: [...ins.test],
            Interval: d(ins.interval, '--interval'),
            Timeout: d(ins.timeout, '--timeout'),
            StartPeriod: d(ins.startPeriod, '--start-period'),
            StartInterval: d(ins.startInterval, '--start-interval'),
            Retries: ins.retries,
          };
        }
        meta(`HEALTHCHECK ${JSON.stringify(this.config.Healthcheck)}`);
        return;
      }
      case 'onbuild':
        this.config.OnBuild = [...(this.config.OnBuild ?? []), ins.expression];
        meta(`ONBUILD ${ins.expression}`);
        return;
      case 'from':
        throw new Error('FROM inside a stage body');
      case 'run':
        return this.applyRun(ins, history);
      case 'copy':
      case 'add':
        return this.applyCopy(ins, history);
    }
  }

  private async applyRun(ins: Extract<Instruction, { kind: 'run' }>, history: PlannedHistory[]): Promise<void> {
    const line = ins.startLine;
    const used: Record<string, string> = {};
    const inputs: Vertex[] = [];
    const wd = this.config.WorkingDir || '/';
    const mounts = ins.mounts.map((m) =>
      parseMount(this.ex(m, line, used), {
        workdir: wd,
        position: this.p._pos(line),
        resolveFrom: (from) => {
          const fs = this.fileSource(from, line, inputs);
          // Input indices are offset by one: inputs[0] of the vertex is the stage filesystem.
          return fs.kind === 'input' ? { kind: 'input', index: fs.index + 1 } : fs;
        },
      }),
    );
    await this.fillStageInputs(inputs);
    let args: string[];
    const files: { path: string; content: string; mode: number }[] = [];
    const cmdText = ins.command.args.join(' ');
    if (ins.heredocs.length && ins.command.shellForm) {
      const first = ins.heredocs[0]!;
      const simple = ins.heredocs.length === 1 && /^\d*<<-?\s*['"]?[^\s'"]+['"]?$/.test(cmdText.trim());
      if (simple) {
        if (first.content.startsWith('#!')) {
          const path = `/dev/pipes/${first.name}`;
          files.push({ path, content: first.content, mode: 0o755 });
          args = [path];
        } else args = [...this.shell(), first.content];
      } else {
        let script = cmdText;
        for (const h of ins.heredocs) script += '\n' + h.content + h.name;
        args = [...this.shell(), script];
      }
    } else args = this.commandArgs(ins.command);
    const env = [...(this.config.Env ?? [])];
    for (const [k, v] of this.scope.argEnv()) {
      env.push(`${k}=${v}`);
      used[k] = v;
    }
    const proxyEnv = this.p._proxyArgs().filter(([k]) => !env.some((e) => e.startsWith(k + '='))).map(([k, v]) => `${k}=${v}`);
    const network = (ins.network ?? 'default') as 'default' | 'none' | 'host';
    if (!['default', 'none', 'host'].includes(network)) {
      throw new StrataError('BAD_FLAG', `RUN --network=${ins.network}: must be default, none or host`, { position: this.p._pos(line) });
    }
    const security = (ins.security ?? 'sandbox') as 'sandbox' | 'insecure';
    if (!['sandbox', 'insecure'].includes(security)) {
      throw new StrataError('BAD_FLAG', `RUN --security=${ins.security}: must be sandbox or insecure`, { position: this.p._pos(line) });
    }
    const op: Op = { kind: 'exec', args, env, proxyEnv: proxyEnv.length ? proxyEnv : undefined, cwd: wd, user: this.config.User ?? '', network, security, mounts, files: files.length ? files : undefined };
    const v = this.vertex(op, inputs, ins, used, this.p._ttl(this.name, ins.cacheTtl, line, true));
    this.fs = v;
    history.push({ entry: { created_by: `RUN ${args.join(' ')} # strata`, comment: 'strata.dockerfile.v0' }, vertex: v });
  }

  private async applyCopy(ins: Extract<Instruction, { kind: 'copy' | 'add' }>, history: PlannedHistory[]): Promise<void> {
    const line = ins.startLine;
    const used: Record<string, string> = {};
    const inputs: Vertex[] = [];
    const from = ins.from !== undefined ? this.ex(ins.from, line, used) : undefined;
    const src = this.fileSource(from, line, inputs);
    await this.fillStageInputs(inputs);
    const heredocNames = new Set(ins.heredocs.map((h) => h.name));
    const sources: string[] = [];
    for (const s of ins.sources) {
      const m = /^<<-?['"]?([^'"]+)['"]?$/.exec(s);
      if (m && heredocNames.has(m[1]!)) continue;
      sources.push(this.ex(s, line, used));
    }
    const heredocs = ins.heredocs.map((h) => ({ name: h.name, content: h.expand ? this.ex(h.content, line, used) : h.content }));
    const op: Op = {
      kind: 'copy',
      from: src.kind === 'input' ? { kind: 'input', index: src.index + 1 } : src,
      sources,
      dest: this.ex(ins.dest, line, used),
      workdir: this.config.WorkingDir || '/',
      chown: ins.chown !== undefined ? this.ex(ins.chown, line, used) : undefined,
      chmod: ins.chmod !== undefined ? this.ex(ins.chmod, line, used) : undefined,
      excludes: ins.excludes.map((e) => this.ex(e, line, used)),
      parents: ins.parents,
      link: ins.link,
      isAdd: ins.kind === 'add',
      checksum: ins.checksum !== undefined ? this.ex(ins.checksum, line, used) : undefined,
      unpack: ins.unpack,
      heredocs,
    };
    const isUrl = op.isAdd && op.sources.some((s) => /^https?:\/\//.test(s));
    const v = this.vertex(op, inputs, ins, used, ins.cacheTtl || isUrl ? this.p._ttl(this.name, ins.cacheTtl, line, false) : undefined);
    this.fs = v;
    const what = [...sources, ...heredocs.map((h) => `<<${h.name}`)].join(' ');
    history.push({ entry: { created_by: `${ins.kind.toUpperCase()} ${what} ${op.dest} # strata`, comment: 'strata.dockerfile.v0' }, vertex: v });
  }
}

function expandPorts(spec: string, position: { file: string; line: number }): string[] {
  const m = /^(?:(.*):)?(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(spec.trim());
  if (!m) throw new StrataError('BAD_PORT', `EXPOSE: invalid port "${spec}"`, { position, hint: 'write PORT, PORT/tcp, PORT/udp or START-END' });
  const proto = (m[4] ?? 'tcp').toLowerCase();
  const start = Number(m[2]);
  const end = m[3] ? Number(m[3]) : start;
  if (end < start || end > 65535) throw new StrataError('BAD_PORT', `EXPOSE: invalid port range "${spec}"`, { position });
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  return out;
}
