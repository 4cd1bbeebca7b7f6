// Shared pieces of the cache-sharing tests: each `Machine` is one CI runner with its own store
// (StrataEnv), running the real CLI; builds are parsed from `--progress plain`.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, expectOk, instructionSteps, parseProgress, type ProgressStep, type RunResult } from '../build/harness.js';
import { busyboxLayout } from '../helpers/base-images.js';

export { expectOk, type ProgressStep, type RunResult };

export interface Built extends RunResult {
  steps: ProgressStep[];
  /** Instruction steps only (no `[internal]` metadata loads). */
  instructions: ProgressStep[];
  warnings: string[];
}

/** The exported cache's index, as `strata cache ls --format json` prints it. */
export interface CacheIndexJson {
  version: number;
  exports: { id: string; time: number }[];
  records: { key: string; chain: string[]; created: number; description: string; export: string }[];
  layers: { diffId: string; digest: string; size: number; mediaType: string }[];
  mounts: { id: string; digest: string; size: number; mediaType: string; lastUsed: number; created: number }[];
}

export class Machine {
  readonly env: StrataEnv;
  constructor(readonly name: string) {
    this.env = new StrataEnv(`strata-share-${name}-`);
  }

  get root(): string {
    return this.env.root;
  }

  /** The store's folder. */
  get store(): string {
    return this.env.store;
  }

  context(name: string, files: Record<string, string>): string {
    return this.env.context(name, files);
  }

  async build(ctx: string, args: string[] = [], extraEnv: Record<string, string> = {}): Promise<Built> {
    const r = await this.env.build(ctx, args, { env: extraEnv });
    const steps = parseProgress(r.stderr);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('WARNING: ')).map((l) => l.slice('WARNING: '.length));
    return { ...r, steps, instructions: instructionSteps(steps), warnings };
  }

  async ok(ctx: string, args: string[] = [], extraEnv: Record<string, string> = {}): Promise<Built> {
    const r = await this.build(ctx, args, extraEnv);
    expectOk(r, `${this.name}: strata build ${args.join(' ')}`);
    return r;
  }

  strata(args: string[], extraEnv: Record<string, string> = {}): Promise<RunResult> {
    return this.env.strata(args, { env: extraEnv });
  }

  async cacheLs(spec: string): Promise<CacheIndexJson> {
    const r = expectOk(await this.strata(['cache', 'ls', spec, '--format', 'json']), `strata cache ls ${spec}`);
    return JSON.parse(r.stdout) as CacheIndexJson;
  }

  /**
   * Names (diffId hex) of the layers on disk, whether unpacked directories or squashfs images
   * (`HEX.erofs`, layers from blobs where the machine allows), and of the blob files in this store.
   */
  storeContent(): { layerDirs: string[]; blobs: string[] } {
    const list = (d: string) => (existsSync(d) ? readdirSync(d) : []);
    return { layerDirs: list(join(this.store, 'layers')).map((n) => n.replace(/\.erofs$/, '')), blobs: list(join(this.store, 'blobs', 'sha256')) };
  }

  cleanup(): void {
    this.env.cleanup();
  }
}

/** `--build-context busybox=oci-layout://DIR:latest`, so `FROM busybox` needs no registry. */
/** One Machine per name (each a fresh store), removed when the test ends. */
export function machines(t: { after(fn: () => void): void }, ...names: string[]): Machine[] {
  const ms = names.map((n) => new Machine(n));
  t.after(() => ms.forEach((m) => m.cleanup()));
  return ms;
}

export async function busyboxContext(): Promise<string[]> {
  return ['--build-context', `busybox=oci-layout://${await busyboxLayout()}:latest`];
}

/**
 * A "compiler" behind a cache mount: one object file per source (named by the source's content
 * hash) in /cache; sources whose object is already there are reused. Prints
 * `objects found: N` (reused) and `objects built: M`, then links /out/app from the sources.
 */
export function compilerDockerfile(from: string, mountOpts = 'id=cc,target=/cache'): string {
  return [
    `FROM ${from} AS build`,
    'WORKDIR /src',
    'COPY src/ ./',
    `RUN --mount=type=cache,${mountOpts} sh -c 'found=0; built=0; for f in *.c; do o=/cache/$(md5sum "$f" | cut -c1-16).o; if [ -f "$o" ]; then found=$((found+1)); else cp "$f" "$o"; built=$((built+1)); fi; done; echo "objects found: $found"; echo "objects built: $built"; mkdir -p /out; cat *.c > /out/app'`,
    '',
    `FROM ${from}`,
    'COPY --from=build /out/app /usr/local/bin/app',
    'RUN echo "linked $(wc -c < /usr/local/bin/app) bytes" > /built.txt',
    '',
  ].join('\n');
}

export function sources(n: number, tag = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 1; i <= n; i++) out[`src/unit${i}.c`] = `int unit${i}(void) { return ${i}; } /* ${tag} */\n`;
  return out;
}

/** The number a step printed as `objects found: N` (undefined when it printed none). */
export function objectsFound(b: Built, step: ProgressStep | undefined = runStep(b)): number | undefined {
  const line = step?.logs.find((l) => l.startsWith('objects found: '));
  return line === undefined ? undefined : Number(line.slice('objects found: '.length));
}

/** The compiler RUN of `compilerDockerfile`. */
export function runStep(b: Built): ProgressStep | undefined {
  return b.instructions.find((s) => s.name.includes('RUN --mount=type=cache'));
}

/** Every blob file of an exported cache folder with its mtime (ms). */
export function folderBlobs(dir: string): Map<string, number> {
  const d = join(dir, 'blobs', 'sha256');
  return new Map(readdirSync(d).map((n) => [n, statSync(join(d, n)).mtimeMs]));
}

/** The digests of an exported cache folder's index: manifest, config (the cache index) and layers. */
export function folderManifest(dir: string): { manifestDigest: string; config: { digest: string }; layers: { digest: string; mediaType: string; annotations?: Record<string, string> }[] } {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const manifestDigest = index.manifests[0]!.digest;
  const m = JSON.parse(readFileSync(join(dir, 'blobs', 'sha256', manifestDigest.slice(7)), 'utf8')) as ReturnType<typeof folderManifest>;
  return { ...m, manifestDigest };
}

export function allCached(b: Built): boolean {
  return b.instructions.length > 0 && b.instructions.every((s) => s.cached);
}

export function stepsSummary(b: Built): string {
  return b.instructions.map((s) => `${s.cached ? 'CACHED' : `ran (${s.miss ?? '?'})`} ${s.name.slice(0, 70)}`).join('\n');
}
