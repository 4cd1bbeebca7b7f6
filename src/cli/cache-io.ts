// `--cache-to` / `--cache-from` (buildx syntax) and the work behind them, shared by `strata build`
// and `strata cache export|import`.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StrataError } from '../errors.js';
import { hexOf, type LayerInfo, type Store } from '../cache/store.js';
import { cacheMountSeeded, packCacheMount, startDeferredSeeds } from '../cache/cache-mounts.js';
import { exportToLocal, exportToRegistry, importCache, type CacheSource, type ExportedMount, type ImportResult, type MountImport } from '../cache/remote.js';
import type { RegistryClient } from '../registry/client.js';
import { BadCacheLayer, dropBadLayer, type Materializer } from '../solver/materialize.js';
import { parseReference } from '../registry/reference.js';
import { parseKv } from './build-options.js';
import { digestOf } from '../graph/digest.js';
import type { Vertex } from '../graph/ops.js';
import { chainId } from '../solver/solver.js';
import { compressChain } from '../cache/variants.js';
import type { ExportedBuild } from '../cache/shared-history.js';

export interface CacheToSpec {
  dest: CacheSource;
  mode: 'min' | 'max';
  mounts: 'none' | 'all' | string[];
  compression: 'gzip' | 'zstd';
  keep: number;
}

export interface CacheFromSpec {
  source: CacheSource;
  /** Without mounts=: 'on-use' (a build seeds a mount when a step uses it; `cache import` seeds all). */
  mounts: MountImport;
}

function mountsOpt(v: string | undefined): 'none' | 'all' | string[] {
  if (v === undefined || v === '' || v === 'none') return 'none';
  if (v === 'all' || v === 'true') return 'all';
  return v.split(/[;:]/).flatMap((x) => x.split(',')).filter(Boolean);
}

function sourceOf(kv: Map<string, string>, flag: string, dirKey: 'src' | 'dest'): CacheSource {
  const type = kv.get('type') ?? (kv.has('ref') ? 'registry' : 'local');
  if (type === 'local') {
    const dir = kv.get(dirKey) ?? kv.get(dirKey === 'src' ? 'source' : 'destination');
    if (!dir) throw new StrataError('BAD_FLAG', `${flag} type=local needs ${dirKey}=DIR`);
    return { kind: 'local', dir: resolve(dir) };
  }
  if (type === 'registry') {
    const ref = kv.get('ref');
    if (!ref) throw new StrataError('BAD_FLAG', `${flag} type=registry needs ref=HOST/REPO:TAG`);
    return { kind: 'registry', ref };
  }
  throw new StrataError('BAD_FLAG', `${flag}: cache type "${type}" is not supported`, { hint: 'use type=local or type=registry' });
}

/** Splits `mounts=a,b` out first: its commas are not field separators. */
function preSplit(value: string): { rest: string; mounts?: string } {
  const m = /(^|,)mounts=([^=]*?)(?=,[a-z-]+=|$)/.exec(value);
  if (!m) return { rest: value };
  return { rest: (value.slice(0, m.index) + value.slice(m.index + m[0].length)).replace(/^,|,$/g, ''), mounts: m[2] };
}

export function parseCacheTo(value: string): CacheToSpec {
  const { rest, mounts } = preSplit(value);
  const kv = parseKv(rest, '--cache-to');
  const mode = kv.get('mode') ?? 'min';
  if (mode !== 'min' && mode !== 'max') throw new StrataError('BAD_FLAG', `--cache-to mode=${mode}: use min or max`);
  const compression = kv.get('compression') ?? 'gzip';
  if (compression !== 'gzip' && compression !== 'zstd') throw new StrataError('BAD_FLAG', `--cache-to compression=${compression}: use gzip or zstd`);
  const keep = Number(kv.get('keep') ?? '3');
  if (!Number.isInteger(keep) || keep < 1) throw new StrataError('BAD_FLAG', `--cache-to keep=${kv.get('keep')}: a whole number of builds, 1 or more`);
  return { dest: sourceOf(kv, '--cache-to', 'dest'), mode, mounts: mountsOpt(mounts), compression, keep };
}

export function parseCacheFrom(value: string): CacheFromSpec {
  const { rest, mounts } = preSplit(value.includes('=') ? value : `type=registry,ref=${value}`);
  const kv = parseKv(rest, '--cache-from');
  return { source: sourceOf(kv, '--cache-from', 'src'), mounts: mounts === undefined ? 'on-use' : mountsOpt(mounts) };
}

export async function runImports(store: Store, client: RegistryClient, specs: CacheFromSpec[], warn: (m: string) => void): Promise<ImportResult[]> {
  const out: ImportResult[] = [];
  for (const s of specs) {
    try {
      const r = await importCache(store, s.source, client, { mounts: s.mounts });
      if (!r) warn(`--cache-from ${describe(s.source)}: no cache there yet`);
      else {
        for (const w of r.warnings) warn(`--cache-from ${describe(s.source)}: ${w.replace(`cache ${describe(s.source)}: `, '')}`);
        out.push(r);
      }
    } catch (e) {
      // A cache that cannot be read is refused; the build goes on without it.
      const message = (e instanceof Error ? e.message : String(e)).replace(`cache ${describe(s.source)}: `, '');
      warn(`--cache-from ${describe(s.source)}: ${message} (ignored)`);
    }
  }
  return out;
}

export function describe(s: CacheSource): string {
  return s.kind === 'local' ? `type=local,src=${s.dir}` : `type=registry,ref=${s.ref}`;
}

export interface ExportInput {
  records: { key: string; chain: LayerInfo[]; description: string }[];
  mountIds: string[];
  /** selection_cache keys the exported COPY --from steps used; undefined exports every row. */
  selectionKeys?: string[];
  /** The builds whose step inputs travel with the cache (to explain an importer's misses). */
  builds?: ExportedBuild[];
  /** A record whose layer cannot be fetched intact is left out of the export, with a warning. */
  warn?: (message: string) => void;
}

/**
 * Whether the exporter gets a layer that is not in the store without fetching it here: the
 * destination already has the blob (e.g. it was imported from there), or the layer comes from
 * another repository of the destination registry (mounted across repositories).
 */
async function atDestination(client: RegistryClient, src: CacheSource | undefined, l: LayerInfo, dest: CacheSource): Promise<boolean> {
  if (!src) return false;
  if (dest.kind === 'local') return existsSync(join(dest.dir, 'blobs', 'sha256', hexOf(l.digest)));
  try {
    const to = parseReference(dest.ref);
    if (src.kind === 'registry' && parseReference(src.ref).registry === to.registry) return true;
    return await client.blobExists(to, l.digest);
  } catch {
    return false;
  }
}

/**
 * The selection_cache keys of the COPY --from steps among `steps`: the same key the solver's
 * selectionChecksum uses (source chain id, sources, excludes, parents).
 */
export async function copyFromSelectionKeys(steps: { vertex: Vertex }[], resultOf: (v: Vertex) => Promise<{ chain: LayerInfo[] }>): Promise<string[]> {
  const keys: string[] = [];
  for (const { vertex } of steps) {
    const op = vertex.op;
    if (op.kind !== 'copy' || op.from.kind !== 'input') continue;
    const source = vertex.inputs[op.from.index];
    if (!source) continue;
    const { chain } = await resultOf(source);
    keys.push(digestOf({ chain: chainId(chain), sources: op.sources, excludes: op.excludes, parents: op.parents }));
  }
  return keys;
}

function selectionsFor(store: Store, keys: string[] | undefined): { key: string; digest: string; files: Record<string, string> }[] {
  const rows = (
    keys === undefined
      ? store.db.prepare('SELECT key, digest, files FROM selection_cache').all()
      : [...new Set(keys)].map((k) => store.db.prepare('SELECT key, digest, files FROM selection_cache WHERE key=?').get(k)).filter((r) => r !== undefined)
  ) as { key: string; digest: string; files: string }[];
  return rows.map((r) => ({ key: r.key, digest: r.digest, files: JSON.parse(r.files) as Record<string, string> }));
}

export async function runExport(store: Store, client: RegistryClient, materializer: Materializer, spec: CacheToSpec, input: ExportInput): Promise<{ records: number; mounts: number; blobsWritten?: number }> {
  const records = [];
  for (const r of input.records) {
    try {
      const fetch: LayerInfo[] = [];
      for (const l of r.chain) if (!(await atDestination(client, materializer.blobSource(l), l, spec.dest))) fetch.push(l);
      await materializer.blobsOf(fetch);
    } catch (e) {
      if (!(e instanceof BadCacheLayer)) throw e;
      // Forgotten here too: a later build reruns the step instead of meeting the bad blob again.
      dropBadLayer(store, e.diffId);
      input.warn?.(`${e.message}; ${r.description} is left out of the cache export`);
      continue;
    }
    r.chain = await compressChain(store, r.chain, spec.compression);
    const row = store.db.prepare('SELECT created FROM cache_records WHERE key=?').get(r.key) as { created: number } | undefined;
    records.push({ key: r.key, chain: r.chain, created: row?.created ?? store.now(), description: r.description });
  }
  const wanted = [...new Set(spec.mounts === 'none' ? [] : spec.mounts === 'all' ? input.mountIds : spec.mounts)];
  // A mount imported by this build's --cache-from is seeded only when a step uses it: one no step
  // used is seeded now, so that it travels on. Packed only once seeded, whole.
  startDeferredSeeds(store, wanted);
  await Promise.all(wanted.map((id) => cacheMountSeeded(store, id)));
  const mounts: ExportedMount[] = [];
  for (const id of wanted) {
    const known = store.db.prepare('SELECT 1 FROM cache_mounts WHERE id=?').get(id);
    if (!known) continue;
    const p = await packCacheMount(store, id, spec.compression);
    mounts.push({ id, digest: p.digest, size: p.size, mediaType: p.mediaType, sharing: p.sharing, created: p.created, lastUsed: p.lastUsed });
  }
  const exportId = randomBytes(6).toString('hex');
  const req = { records, mounts: wanted, selections: selectionsFor(store, input.selectionKeys), builds: input.builds, compression: spec.compression, keep: spec.keep };
  if (spec.dest.kind === 'local') {
    const r = await exportToLocal(store, spec.dest.dir, req, mounts, exportId);
    return { records: r.index.records.length, mounts: mounts.length, blobsWritten: r.blobsWritten };
  }
  const r = await exportToRegistry(store, client, spec.dest.ref, req, mounts, exportId, (l) => materializer.blobSource(l));
  return { records: r.index.records.length, mounts: mounts.length };
}
