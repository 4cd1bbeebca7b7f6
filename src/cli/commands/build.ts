// `strata build`: buildx's flags, the embedded store, and BuildKit-like progress output.
import type { Command } from 'commander';
import { existsSync, mkdtempSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { StrataError } from '../../errors.js';
import { parseDockerfile } from '../../dockerfile/parser.js';
import { planBuild, goArch, parseNamedContextValue, type NamedContext } from '../../frontend/plan.js';
import { Store } from '../../cache/store.js';
import { BaseImages } from '../../solver/base-images.js';
import { Solver } from '../../solver/solver.js';
import type { Runtime } from '../../executor/types.js';
import { writeBuiltImage, type BuiltImage } from '../../solver/final-image.js';
import { plainRenderer, jsonRenderer } from '../../progress/plain.js';
import type { EventSink } from '../../progress/events.js';
import { parseDockerignore, PatternMatcher } from '../../context/dockerignore.js';
import { collect, parseBuildArgs, parseOutput, parseSecrets, type OutputSpec } from '../build-options.js';
import { exportImage } from '../exporters.js';
import { historyLimits, pruneHistory, recordBuild, startBuild } from '../../cache/history.js';
import { parseDuration } from '../../frontend/duration.js';
import { formatSize, parseSize } from '../size.js';
import { findPreviousBuild } from '../../cache/explain.js';
import { exportedBuild, findImportedBuild } from '../../cache/shared-history.js';
import { Materializer, BadCacheLayer, dropBadLayer } from '../../solver/materialize.js';
import { PersistentStatCache } from '../../cache/stat-cache-store.js';

export interface BuildFlags {
  file?: string;
  tag: string[];
  target?: string;
  buildArg: string[];
  output: string[];
  progress: string;
  network?: string;
  secret: string[];
  buildContext: string[];
  platform?: string;
  noCache?: boolean;
  noCacheFilter: string[];
  pull?: boolean;
  push?: boolean;
  load?: boolean;
  jobs?: string;
  root?: string;
  insecureRegistry: string[];
  cacheTtl: string[];
  gcKeepStorage?: string;
  cacheTo: string[];
  cacheFrom: string[];
  quiet?: boolean;
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('Build an image from a Dockerfile')
    .argument('[path]', 'build context directory', '.')
    .option('-f, --file <file>', 'Dockerfile (default: PATH/Dockerfile; - for stdin)')
    .option('-t, --tag <name>', 'name and optionally a tag (repeatable)', collect, [])
    .option('--target <stage>', 'build this stage')
    .option('--build-arg <k=v>', 'set a build-time variable (repeatable)', collect, [])
    .option('-o, --output <spec>', 'type=image|oci|docker|registry|local[,dest=...] (repeatable)', collect, [])
    .option('--progress <mode>', 'auto, tty, plain or rawjson', 'auto')
    .option('--network <mode>', 'default network for RUN: default, none or host')
    .option('--secret <spec>', 'id=ID,src=FILE (repeatable)', collect, [])
    .option('--build-context <name=src>', 'named context: DIR, oci-layout://DIR[:TAG], docker-image://REF (repeatable)', collect, [])
    .option('--platform <platform>', 'target platform (only the host platform is supported)')
    .option('--no-cache', 'do not use the cache for any step')
    .option('--no-cache-filter <stages>', 'do not use the cache for these stages (repeatable, comma-separated)', collect, [])
    .option('--pull', 'always resolve base images in the registry')
    .option('--push', 'shorthand for --output type=registry')
    .option('--load', 'keep the image in the store (the default)')
    .option('--jobs <n>', 'steps to run at once')
    .option('--root <dir>', 'store directory (default $STRATA_ROOT or $XDG_DATA_HOME/strata)')
    .option('--insecure-registry <host>', 'allow plain HTTP to this registry (repeatable)', collect, [])
    .option('--cache-ttl <ttl>', 'DURATION for every RUN, or STAGE=DURATION (repeatable)', collect, [])
    .option('--cache-to <spec>', 'type=local,dest=DIR|type=registry,ref=REF[,mode=min|max][,mounts=all|ID,ID][,compression=gzip|zstd][,keep=N] (repeatable)', collect, [])
    .option('--cache-from <spec>', 'type=local,src=DIR|type=registry,ref=REF[,mounts=all|none|ID,ID] (repeatable)', collect, [])
    .option('--gc-keep-storage <size>', 'after the build, trim the store to this size (default $STRATA_GC_KEEP_STORAGE or 10% of the disk)')
    .option('-q, --quiet', 'print only the image digest')
    .action(async (path: string, flags: BuildFlags & { cache?: boolean; cacheFilter?: string[] | boolean }) => {
      // commander reads `--no-X` as the negation of X: map both back to buildx's meaning.
      flags.noCache = flags.cache === false;
      flags.noCacheFilter = Array.isArray(flags.cacheFilter) ? flags.cacheFilter : [];
      const digest = await runBuild(path, flags);
      process.stdout.write(`${digest}\n`);
    });
}

function readDockerfile(contextDir: string, file: string | undefined): { text: Buffer; name: string; path?: string } {
  if (file === '-') return { text: readFileSync(0), name: '-' };
  const path = file ? resolve(file) : join(contextDir, 'Dockerfile');
  if (!existsSync(path)) {
    throw new StrataError('NO_DOCKERFILE', `cannot read the Dockerfile: ${path} does not exist`, { hint: 'pass its path with -f FILE' });
  }
  return { text: readFileSync(path), name: file ?? 'Dockerfile', path };
}

function loadIgnore(contextDir: string, dockerfilePath?: string): { fn: (rel: string, isDir: boolean) => boolean; mayReinclude: boolean } | undefined {
  const candidates = [dockerfilePath ? dockerfilePath + '.dockerignore' : undefined, join(contextDir, '.dockerignore')].filter((p): p is string => !!p);
  for (const c of candidates) {
    if (existsSync(c)) {
      const patterns = parseDockerignore(readFileSync(c, 'utf8'));
      if (patterns.length === 0) return undefined;
      const m = new PatternMatcher(patterns);
      return { fn: (rel: string) => m.matches(rel), mayReinclude: m.exclusions };
    }
  }
  return undefined;
}

export async function runBuild(pathArg: string, flags: BuildFlags): Promise<string> {
  const contextDir = resolve(pathArg);
  if (!existsSync(contextDir)) throw new StrataError('NO_CONTEXT', `build context ${contextDir} does not exist`);
  if (flags.platform) {
    const want = flags.platform.split(',').map((s) => s.trim());
    const host = `linux/${goArch()}`;
    if (want.length !== 1 || (want[0] !== host && want[0] !== host.replace('/amd64', '/x86_64'))) {
      throw new StrataError('UNSUPPORTED_PLATFORM', `--platform ${flags.platform}: strata builds only for this machine's platform (${host})`, {
        hint: `drop --platform or pass --platform ${host}`,
      });
    }
  }
  const df = readDockerfile(contextDir, flags.file);
  const parsed = parseDockerfile(df.text, df.name);
  const store = Store.open(flags.root ? resolve(flags.root) : undefined);
  store.cleanTmp();
  const buildId = randomBytes(8).toString('hex');
  const started = store.now();
  const write = (s: string) => process.stderr.write(s);
  const events: EventSink = flags.quiet ? () => undefined : flags.progress === 'rawjson' ? jsonRenderer(write) : plainRenderer(write);
  const warn = (message: string) => events({ type: 'warning', message, time: Date.now() });
  const info = (message: string) => events({ type: 'info', message, time: Date.now() });
  for (const w of parsed.warnings) warn(`${df.name}:${w.line}: ${w.message}`);

  const namedContexts: Record<string, NamedContext> = {};
  const contextDirs: Record<string, string> = { context: contextDir };
  for (const bc of flags.buildContext) {
    const eq = bc.indexOf('=');
    if (eq <= 0) throw new StrataError('BAD_FLAG', `--build-context ${bc}: write NAME=SOURCE`);
    const name = bc.slice(0, eq);
    const nc = parseNamedContextValue(bc.slice(eq + 1));
    if (nc.kind === 'dir') {
      nc.path = resolve(nc.path);
      contextDirs[name] = nc.path;
    } else if (nc.kind === 'layout') nc.dir = resolve(nc.dir);
    namedContexts[name] = nc;
  }
  const secrets = parseSecrets(flags.secret);
  const secretFiles: Record<string, string> = {};
  let secretTmp: string | undefined;
  for (const [k, v] of Object.entries(secrets)) {
    if (k.startsWith('env:')) {
      secretTmp ??= mkdtempSync(join(tmpdir(), 'strata-secret-'));
      const f = join(secretTmp, k.slice(4));
      writeFileSync(f, process.env[v] ?? '', { mode: 0o600 });
      secretFiles[k.slice(4)] = f;
    } else secretFiles[k] = resolve(v);
  }
  const stageTtls: Record<string, string> = {};
  let defaultTtl: string | undefined;
  for (const t of flags.cacheTtl) {
    const eq = t.indexOf('=');
    const value = eq > 0 ? t.slice(eq + 1) : t;
    // Checked here, not at the first RUN: the flag is the user's, not a Dockerfile line's.
    if (parseDuration(value, `--cache-ttl ${t}`) <= 0) {
      throw new StrataError('BAD_FLAG', `--cache-ttl ${t}: a TTL must be longer than 0`, { hint: 'use --no-cache to rerun every step' });
    }
    if (eq > 0) stageTtls[t.slice(0, eq).toLowerCase()] = value;
    else defaultTtl = value;
  }
  const gcText = flags.gcKeepStorage ?? process.env.STRATA_GC_KEEP_STORAGE;
  if (gcText) parseSize(gcText, flags.gcKeepStorage ? '--gc-keep-storage' : 'STRATA_GC_KEEP_STORAGE');
  const keepHistory = historyLimits();

  const outputs: OutputSpec[] = flags.output.map(parseOutput);
  // Cache import/export code loads only for builds that use it.
  const cacheIo = flags.cacheTo.length || flags.cacheFrom.length ? await import('../cache-io.js') : undefined;
  const cacheTo = cacheIo ? flags.cacheTo.map(cacheIo.parseCacheTo) : [];
  const cacheFrom = cacheIo ? flags.cacheFrom.map(cacheIo.parseCacheFrom) : [];
  if (flags.push) outputs.push({ type: 'registry' });
  if (outputs.length === 0) outputs.push({ type: 'image', push: false });

  const bases = new BaseImages(store, { pull: !!flags.pull, insecureRegistries: flags.insecureRegistry, warn });
  const buildArgs = parseBuildArgs(flags.buildArg);
  const platform = { os: 'linux', architecture: goArch() };
  let status = 'failed';
  let statCache: PersistentStatCache | undefined;
  let solver: Solver | undefined;
  let plan: Awaited<ReturnType<typeof planBuild>> | undefined;
  try {
    plan = await planBuild(parsed, {
      file: df.name,
      buildArgs,
      target: flags.target,
      namedContexts,
      resolveBase: (op) => bases.info(op),
      noCache: flags.noCache,
      noCacheFilter: flags.noCacheFilter.flatMap((s) => s.split(',')).filter(Boolean),
      cacheTtl: { default: defaultTtl, stages: stageTtls },
      platform,
    });
    startBuild(store, { id: buildId, started, dockerfile: df.path ?? df.name, context: contextDir, target: plan.target.name, args: buildArgs });
    for (const w of plan.warnings) warn(w);
    if (plan.unusedBuildArgs.length) warn(`build arguments not consumed by any ARG: ${plan.unusedBuildArgs.join(', ')}`);
    const sde = buildArgs.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH;
    const sourceDateEpoch = sde !== undefined && sde !== '' ? Number(sde) : undefined;
    if (sourceDateEpoch !== undefined && !Number.isInteger(sourceDateEpoch)) {
      throw new StrataError('BAD_FLAG', `SOURCE_DATE_EPOCH=${sde} is not a whole number of seconds`);
    }
    // Layers are committed uncompressed; outputs and cache exports compress what they need.
    const compression = 'none' as const;
    const ignore = loadIgnore(contextDir, df.path);
    statCache = new PersistentStatCache(store);
    let runtime: Promise<Runtime> | undefined;
    if (cacheIo && cacheFrom.length) {
      for (const r of await cacheIo.runImports(store, bases.client, cacheFrom, warn)) {
        info(`imported cache: ${r.records} new records, ${r.layers} layers listed, cache mounts seeded: ${r.mounts.length ? r.mounts.join(', ') : 'none'}`);
      }
    }
    // A fresh machine has no build of its own: compare with the one that came with an imported cache.
    const previous =
      findPreviousBuild(store, { dockerfile: df.path ?? df.name, context: contextDir, target: plan.target.name, before: buildId }) ??
      findImportedBuild(store, { dockerfile: df.path ?? df.name, context: contextDir, target: plan.target.name });
    const materializer = new Materializer(store, bases.client);
    const makeSolver = () => new Solver({
      store,
      bases,
      contextDirs,
      ignore: ignore?.fn,
      ignoreMayReinclude: ignore?.mayReinclude,
      secrets: secretFiles,
      events,
      jobs: flags.jobs ? Number(flags.jobs) : availableParallelism(),
      compression,
      sourceDateEpoch,
      runtime: () => (runtime ??= import('../../executor/runtime.js').then((m) => m.detectRuntime())),
      buildId,
      statCache,
      previous,
      materializer,
    });
    solver = makeSolver();
    if (flags.network && flags.network !== 'default') {
      for (const v of plan.vertices) if (v.op.kind === 'exec' && v.op.network === 'default') v.op.network = flags.network as 'none' | 'host';
    }
    let result;
    const badLayers = new Set<string>();
    for (;;) {
      try {
        result = await solver.solve(plan.target.final);
        // Outputs need the final chain's content: fetch (and verify) it here, where a bad
        // imported layer can still be dropped and its steps rebuilt.
        if (outputs.some((o) => o.type === 'local')) await materializer.unpackChain(result.chain);
        else if (outputs.some((o) => o.type !== 'cacheonly')) await materializer.blobsOf(result.chain);
        break;
      } catch (e) {
        // An imported layer failed verification: forget the records built on it and go on. Each
        // round drops another layer, so this ends; the same layer again would mean no progress.
        if (!(e instanceof BadCacheLayer) || badLayers.has(e.diffId)) throw e;
        badLayers.add(e.diffId);
        const n = dropBadLayer(store, e.diffId);
        warn(`${e.message}; dropped ${n} cache record(s) that used it and rebuilding those steps`);
        const done = solver.steps;
        solver = makeSolver();
        solver.steps.push(...done.filter((s) => !s.result.cached));
      }
    }
    statCache.flush();
    info(`context: read ${solver.contextBytesRead} bytes`);
    const byVertex = new Map(solver.steps.map((s) => [s.vertex.id, s.result]));
    const finalChain = result.chain;
    const producedAt = Math.max(0, ...solver.steps.map((s) => s.result.created ?? 0)) || store.now();
    // One image per layer encoding: the store keeps layers as committed; archives and registries
    // get compressed blobs (gzip unless the output asks for zstd), as buildx does.
    const images = new Map<string, Promise<BuiltImage>>();
    const imageFor = (encoding: 'stored' | 'gzip' | 'zstd') => {
      let p = images.get(encoding);
      if (!p) {
        p = (async () => {
          // The manifest needs only digests and sizes: a cacheonly build fetches no layer for it.
          if (encoding !== 'stored') await materializer.blobsOf(finalChain);
          const chain = encoding === 'stored' ? finalChain : await (await import('../../cache/variants.js')).compressChain(store, finalChain, encoding);
          return writeBuiltImage(store, {
            config: plan!.target.config,
            author: plan!.target.author,
            baseHistory: plan!.target.base.history,
            baseLayerCount: plan!.target.base.diffIds.length,
            steps: plan!.target.history.map((h) => {
              const r = h.vertex ? byVertex.get(h.vertex.id) : undefined;
              const at = sourceDateEpoch === undefined && r?.created !== undefined ? new Date(r.created).toISOString() : undefined;
              return { entry: at ? { created: at, ...h.entry } : h.entry, addedLayer: !!r?.addedLayer };
            }),
            chain,
            // The time the result was produced, so a fully cached rebuild gives the same image digest.
            created: sourceDateEpoch !== undefined ? new Date(sourceDateEpoch * 1000) : new Date(producedAt),
            platform,
          });
        })();
        images.set(encoding, p);
      }
      return p;
    };
    let printed: string | undefined;
    for (const o of outputs) {
      if (o.type === 'cacheonly') continue;
      if (o.type === 'local') {
        await materializer.unpackChain(finalChain);
        await runOutput(o, await imageFor('stored'), finalChain, store, bases, flags);
        continue;
      }
      const pushes = o.type === 'registry' || (o.type === 'image' && o.push);
      const encoding = o.type === 'image' && !pushes ? 'stored' : ('compression' in o && o.compression) || 'gzip';
      await materializer.blobsOf(finalChain);
      const image = await imageFor(encoding);
      printed ??= image.manifestDigest;
      await runOutput(o, image, finalChain, store, bases, flags);
    }
    const image = { manifestDigest: printed ?? (await imageFor('stored')).manifestDigest };
    for (const spec of cacheIo ? cacheTo : []) {
      const stepsToExport = solver.steps.filter((s) => spec.mode === 'max' || s.vertex.stage === plan!.target.name);
      const mountIds = plan.vertices.flatMap((v) => (v.op.kind === 'exec' ? v.op.mounts.filter((m) => m.type === 'cache').map((m) => (m as { id: string }).id) : []));
      const r = await cacheIo!.runExport(store, bases.client, materializer, spec, {
        records: stepsToExport.map((s) => ({ key: s.result.key, chain: s.result.chain, description: `${s.vertex.stepLabel} ${s.vertex.instruction}` })),
        mountIds,
        selectionKeys: await cacheIo!.copyFromSelectionKeys(stepsToExport, (v) => solver!.solve(v)),
        builds: [exportedBuild({ id: buildId, started, dockerfile: df.path ?? df.name, context: contextDir, target: plan.target.name }, [...solver.steps].sort((x, y) => x.vertex.id - y.vertex.id))],
        warn,
      });
      info(`exported cache to ${cacheIo!.describe(spec.dest)}: ${r.records} records, ${r.mounts} cache mount(s)`);
    }
    status = 'done';
    return image.manifestDigest;
  } finally {
    if (solver && plan) {
      recordBuild(store, {
        id: buildId,
        started,
        finished: store.now(),
        dockerfile: df.path ?? df.name,
        context: contextDir,
        target: plan.target.name,
        args: buildArgs,
        status,
        steps: [...solver.steps].sort((x, y) => x.vertex.id - y.vertex.id),
      });
      pruneHistory(store, keepHistory);
    }
    // A build that ran nothing added nothing: skip the (du-costly) size check.
    if (status === 'done' && solver?.steps.some((s) => !s.result.cached)) await runGc(store, flags, buildId, started, warn);
    if (secretTmp) await rm(secretTmp, { recursive: true, force: true });
    store.close();
  }
}

async function runOutput(o: OutputSpec, image: BuiltImage, chain: import('../../cache/store.js').LayerInfo[], store: Store, bases: BaseImages, flags: BuildFlags): Promise<void> {
  if (o.type === 'local') {
    const dest = resolve(o.dest);
    await mkdir(dest, { recursive: true });
    const { withChain } = await import('../../solver/mounts.js');
    // GNU cp, not fs.cp: fs.cp refuses to replace a symlink left by an earlier export to the same
    // folder when its absolute target resolves inside the source (`/linuxrc -> /bin/busybox`).
    await withChain(store, chain, async (merged) => {
      const { spawnSync } = await import('node:child_process');
      const r = spawnSync('cp', ['-a', '--', `${merged}/.`, `${dest}/`], { encoding: 'utf8' });
      if (r.status !== 0) {
        throw new StrataError('OUTPUT_FAILED', `cannot write the local output to ${dest}: ${(r.stderr || r.error?.message || '').trim()}`, {
          hint: 'check that the folder is writable and holds nothing the image replaces with another file type',
        });
      }
    });
    return;
  }
  await exportImage(o, image, store, bases.client, flags.tag);
}

async function runGc(store: Store, flags: BuildFlags, buildId: string, started: number, warn: (m: string) => void): Promise<void> {
  const text = flags.gcKeepStorage ?? process.env.STRATA_GC_KEEP_STORAGE;
  let limit: number;
  if (text) limit = parseSize(text, '--gc-keep-storage');
  else {
    const fs = statfsSync(store.root);
    limit = Math.floor((fs.blocks * fs.bsize) / 10);
  }
  const { autoGc } = await import('../../cache/prune.js');
  const r = autoGc(store, { limit, buildId, buildStarted: started });
  if (r && r.removed.length) warn(`store over ${formatSize(limit)}: removed ${r.removed.length} least recently used record(s), freed ${formatSize(r.freed)}`);
}
