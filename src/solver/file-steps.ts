// COPY/ADD and WORKDIR's mkdir: file operations done through an overlay mount of the parent chain,
// so their writes land in a fresh upper that becomes the layer.
import { StrataError } from '../errors.js';
import type { LayerInfo, Store } from '../cache/store.js';
import type { CopyOp, MkdirOp, Vertex } from '../graph/ops.js';
import { resolveUser } from '../executor/user.js';
import { copyFiles, ensureWorkdir } from '../fileops/copy.js';
import type { CopyReuse, LinkStats } from '../fileops/link-reuse.js';
import { matchStep, type PreviousBuild, type StepInputs } from '../cache/explain.js';
import { commitUpper, type CommitOptions } from './commit.js';
import { mountChain, type MountedChain } from './mounts.js';
import { MEDIA_TYPES } from '../snapshot/diff.js';
import type { SpliceSource } from '../snapshot/tar-splice.js';
import type { SelectedSource } from '../context/walk.js';

export interface FileStepContext {
  store: Store;
  contextDirs: Record<string, string>;
  ignore?: (relPath: string, isDir: boolean) => boolean;
  ignoreMayReinclude?: boolean;
  commit: Omit<CommitOptions, 'mountpoints'>;
  /** This step's key inputs and the previous build: where unchanged files may be linked from. */
  history?: { previous?: PreviousBuild; inputs?: StepInputs };
  /** A COPY's sources by word, as the walk for its key selected them (CopyRequest.selected). */
  selected?: ReadonlyMap<string, SelectedSource>;
  /**
   * Runs once the sources are read (beside the commit): the check that they did not change
   * meanwhile. Told the source files the copy never read (linked from the earlier layer instead).
   */
  afterCopy?: (unread: ReadonlySet<string>) => Promise<void>;
}

function position(v: Vertex) {
  return v.location && { file: v.location.file, line: v.location.line };
}

/**
 * The previous result of this COPY from a context, when it was made on the same parent chain by the
 * same instruction: files whose checksum is unchanged since can be hard-linked from its unpacked
 * layer (fileops/link-reuse.ts checks everything else per file).
 */
export function copyReuse(store: Store, vertex: Vertex, op: CopyOp, parent: LayerInfo[], history: FileStepContext['history']): (CopyReuse & { tar?: string }) | undefined {
  const cur = history?.inputs;
  if (op.from.kind !== 'context' || !cur?.files || !history?.previous) return undefined;
  const prev = matchStep(history.previous, { stage: vertex.stage, instruction: vertex.instruction, stepLabel: vertex.stepLabel });
  const before = prev?.inputs.files;
  if (!prev || !before || prev.inputs.op !== cur.op || prev.inputs.inputs[0] !== cur.inputs[0] || prev.inputs.sourceDateEpoch !== cur.sourceDateEpoch) return undefined;
  const rec = store.db.prepare('SELECT chain, layer FROM cache_records WHERE key=?').get(prev.key) as { chain: string; layer: string | null } | undefined;
  if (!rec?.layer) return undefined;
  const chain = JSON.parse(rec.chain) as string[];
  if (chain.length !== parent.length + 1 || chain[parent.length] !== rec.layer || parent.some((l, i) => chain[i] !== l.diffId)) return undefined;
  if (!store.layerReady(rec.layer)) return undefined;
  const now = cur.files;
  // The older layer's tar, when the store keeps it uncompressed (a layer this store committed).
  const info = store.layer(rec.layer);
  const tar = info?.mediaType === MEDIA_TYPES.none && store.hasBlob(info.digest) ? store.blobPath(info.digest) : undefined;
  return {
    layerDir: store.layerDir(rec.layer),
    tar,
    unchanged: (p) => {
      const b = before[p];
      return b !== undefined && b === now[p];
    },
  };
}

export async function runCopy(vertex: Vertex, op: CopyOp, inputs: LayerInfo[][], ctx: FileStepContext): Promise<LayerInfo | undefined> {
  const root = await mountChain(ctx.store, inputs[0]!, 'copy');
  let src: MountedChain | undefined;
  let committed = false;
  try {
    let srcRoot: string;
    let srcIsRootfs = false;
    if (op.from.kind === 'context') {
      const dir = ctx.contextDirs[op.from.name];
      if (!dir) throw new StrataError('NO_CONTEXT', `build context "${op.from.name}" was not provided`, { position: position(vertex) });
      srcRoot = dir;
    } else {
      src = await mountChain(ctx.store, inputs[op.from.index]!, 'copysrc');
      srcRoot = src.merged;
      srcIsRootfs = true;
    }
    let chown: { uid: number; gid: number } | undefined;
    if (op.chown) {
      const u = await resolveUser(root.merged, op.chown);
      chown = { uid: u.uid, gid: u.gid };
    }
    let finish: ((upper: string) => Promise<LinkStats>) | undefined;
    const reuse = copyReuse(ctx.store, vertex, op, inputs[0]!, ctx.history);
    try {
      ({ finish } = await copyFiles({
        srcRoot,
        srcIsRootfs,
        ignore: op.from.kind === 'context' && op.from.name === 'context' ? ctx.ignore : undefined,
        ignoreMayReinclude: ctx.ignoreMayReinclude,
        sources: op.sources,
        dest: op.dest,
        destRoot: root.merged,
        destUpper: root.upper,
        workdir: op.workdir,
        chown,
        chmod: op.chmod,
        excludes: op.excludes,
        parents: op.parents,
        isAdd: op.isAdd,
        checksum: op.checksum,
        unpack: op.unpack,
        heredocs: op.heredocs,
        reuse,
        selected: op.from.kind === 'context' ? ctx.selected : undefined,
      }));
    } catch (e) {
      if (e instanceof StrataError && !e.position) throw new StrataError(e.code, e.message, { position: position(vertex), hint: e.hint, cause: e });
      throw e;
    }
    await root.release({ keepUpper: true });
    committed = true;
    // Deferred files (linked, or copied when they cannot be) read the context too.
    const links = finish && (await finish(root.upper));
    const splice: SpliceSource | undefined = reuse?.tar && links ? { layerDir: reuse.layerDir, tar: reuse.tar, linked: links.inodes } : undefined;
    // Started now, once every source was read, so that it overlaps the commit; a failure still fails the step.
    const verified = ctx.afterCopy?.(links?.sources ?? new Set()).then(
      () => undefined,
      (e: unknown) => e,
    );
    const layer = await commitUpper(ctx.store, root.upper, root.lowers, { ...ctx.commit, mountpoints: [], splice });
    const failure = await verified;
    if (failure !== undefined) throw failure;
    return layer;
  } finally {
    if (!committed) await root.release().catch(() => undefined);
    if (src) await src.release().catch(() => undefined);
  }
}

export async function runMkdir(op: MkdirOp, inputs: LayerInfo[][], ctx: FileStepContext): Promise<LayerInfo | undefined> {
  const root = await mountChain(ctx.store, inputs[0]!, 'mkdir');
  let committed = false;
  try {
    const owner = op.user ? await resolveUser(root.merged, op.user).catch(() => undefined) : undefined;
    const created = await ensureWorkdir(root.merged, op.path, owner && { uid: owner.uid, gid: owner.gid });
    if (!created) {
      await root.release();
      committed = true;
      return undefined;
    }
    await root.release({ keepUpper: true });
    committed = true;
    return await commitUpper(ctx.store, root.upper, root.lowers, { ...ctx.commit, mountpoints: [] });
  } finally {
    if (!committed) await root.release().catch(() => undefined);
  }
}
