// COPY/ADD and WORKDIR's mkdir: file operations done through an overlay mount of the parent chain,
// so their writes land in a fresh upper that becomes the layer.
import { StrataError } from '../errors.js';
import type { LayerInfo, Store } from '../cache/store.js';
import type { CopyOp, MkdirOp, Vertex } from '../graph/ops.js';
import { resolveUser } from '../executor/user.js';
import { copyFiles, ensureWorkdir } from '../fileops/copy.js';
import { commitUpper, type CommitOptions } from './commit.js';
import { mountChain, type MountedChain } from './mounts.js';

export interface FileStepContext {
  store: Store;
  contextDirs: Record<string, string>;
  ignore?: (relPath: string, isDir: boolean) => boolean;
  ignoreMayReinclude?: boolean;
  commit: Omit<CommitOptions, 'mountpoints'>;
}

function position(v: Vertex) {
  return v.location && { file: v.location.file, line: v.location.line };
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
    try {
      await copyFiles({
        srcRoot,
        srcIsRootfs,
        ignore: op.from.kind === 'context' && op.from.name === 'context' ? ctx.ignore : undefined,
        ignoreMayReinclude: ctx.ignoreMayReinclude,
        sources: op.sources,
        dest: op.dest,
        destRoot: root.merged,
        workdir: op.workdir,
        chown,
        chmod: op.chmod,
        excludes: op.excludes,
        parents: op.parents,
        isAdd: op.isAdd,
        checksum: op.checksum,
        unpack: op.unpack,
        heredocs: op.heredocs,
      });
    } catch (e) {
      if (e instanceof StrataError && !e.position) throw new StrataError(e.code, e.message, { position: position(vertex), hint: e.hint, cause: e });
      throw e;
    }
    await root.release({ keepUpper: true });
    committed = true;
    return await commitUpper(ctx.store, root.upper, root.lowers, { ...ctx.commit, mountpoints: [] });
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
