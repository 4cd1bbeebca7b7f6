// Running a RUN step: the parent chain mounted as an overlay, the step's mounts prepared, the
// process started in an OCI runtime, its upper committed as the step's layer.
import { chmod, chown, copyFile, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import posix from 'node:path/posix';
import { StrataError } from '../errors.js';
import type { LayerInfo, Store } from '../cache/store.js';
import { acquireCacheMount, seedCacheMountFrom, type CacheMountLease } from '../cache/cache-mounts.js';
import type { ExecOp, Vertex } from '../graph/ops.js';
import type { ExecMount, Runtime } from '../executor/types.js';
import { runContainer } from '../executor/run.js';
import { resolveUser } from '../executor/user.js';
import { resolveInRoot } from '../fileops/resolve.js';
import { copyFiles } from '../fileops/copy.js';
import type { IgnoreFn, Reinclude } from '../context/walk.js';
import { commitUpper, type CommitOptions } from './commit.js';
import { mountChain, type MountedChain } from './mounts.js';

export interface ExecContext {
  store: Store;
  runtime: Runtime;
  contextDirs: Record<string, string>;
  secrets: Record<string, string>;
  commit: Omit<CommitOptions, 'mountpoints'>;
  log(stream: 1 | 2, data: Buffer): void;
  signal?: AbortSignal;
  buildId: string;
  /** .dockerignore of the main context: ignored paths are not part of a bind mount either. */
  ignore?: IgnoreFn;
  ignoreMayReinclude?: Reinclude;
}

export async function runExec(vertex: Vertex, op: ExecOp, inputs: LayerInfo[][], ctx: ExecContext): Promise<LayerInfo | undefined> {
  const { store } = ctx;
  const root = await mountChain(store, inputs[0]!, 'run');
  const cleanups: (() => Promise<void> | void)[] = [];
  let committed = false;
  try {
    const mounts: ExecMount[] = [];
    for (const m of op.mounts) {
      if (m.type === 'tmpfs') mounts.push({ type: 'tmpfs', target: m.target, size: m.size });
      else if (m.type === 'cache') {
        const lease: CacheMountLease = await acquireCacheMount(store, m.id, m.sharing, ctx.buildId);
        cleanups.push(() => lease.release());
        if (lease.fresh) {
          if (m.from) {
            const seed = await sourceDir(m.from, m.source ?? '/', inputs, ctx, cleanups);
            await seedCacheMountFrom(m.id, seed, lease.dir);
          }
          await chmod(lease.dir, m.mode);
          await chown(lease.dir, m.uid, m.gid);
        }
        mounts.push({ type: 'bind', source: lease.dir, target: m.target, readonly: m.readonly });
      } else if (m.type === 'bind') {
        let src = await sourceDir(m.from, m.source, inputs, ctx, cleanups);
        const ignore = m.from.kind === 'context' && m.from.name === 'context' ? ctx.ignore : undefined;
        if (m.from.kind === 'context' && (ignore || !m.readonly)) {
          // The step must see exactly what its cache key covers: .dockerignore'd paths do not exist
          // (BuildKit's context holds only what was sent). Writes to a rw bind are thrown away, as in
          // BuildKit. Both need a copy of the selection.
          const copy = store.tmpPath('bindctx');
          await mkdir(copy, { recursive: true });
          cleanups.push(() => import('node:fs/promises').then((fs) => fs.rm(copy, { recursive: true, force: true })));
          await copyFiles({
            srcRoot: ctx.contextDirs[m.from.name]!,
            srcIsRootfs: false,
            ignore,
            ignoreMayReinclude: ctx.ignoreMayReinclude,
            sources: [m.source],
            dest: '/',
            destRoot: copy,
            workdir: '/',
          });
          src = (await stat(src)).isDirectory() ? copy : join(copy, posix.basename(src));
        }
        mounts.push({ type: 'bind', source: src, target: m.target, readonly: m.readonly });
      } else {
        const file = ctx.secrets[m.id];
        if (!file) {
          if (m.required) {
            throw new StrataError('SECRET_MISSING', `secret "${m.id}" is required but was not provided`, {
              position: vertex.location && { file: vertex.location.file, line: vertex.location.line },
              hint: `pass it with --secret id=${m.id},src=FILE`,
            });
          }
          continue;
        }
        const dir = store.tmpPath('secret');
        await mkdir(dir, { recursive: true, mode: 0o700 });
        cleanups.push(() => import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true })));
        const copy = join(dir, 'secret');
        await copyFile(file, copy);
        await chmod(copy, m.mode);
        await chown(copy, m.uid, m.gid);
        mounts.push({ type: 'bind', source: copy, target: m.target, readonly: true });
      }
    }
    if (op.files?.length) {
      const dir = store.tmpPath('heredoc');
      await mkdir(dir, { recursive: true });
      cleanups.push(() => import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true })));
      for (const f of op.files) {
        const host = join(dir, posix.basename(f.path));
        await writeFile(host, f.content, { mode: f.mode });
        mounts.push({ type: 'bind', source: host, target: f.path, readonly: true });
      }
    }
    const user = await resolveUser(root.merged, op.user);
    const tail: string[] = [];
    const keepTail = (data: Buffer) => {
      tail.push(...data.toString('utf8').split('\n').filter((l) => l !== ''));
      if (tail.length > 20) tail.splice(0, tail.length - 20);
    };
    const res = await runContainer(
      {
        rootfs: root.merged,
        args: op.args,
        env: [...op.env, ...(op.proxyEnv ?? [])],
        cwd: op.cwd,
        user,
        network: op.network === 'none' ? 'none' : 'host',
        mounts,
        stdout: (d) => {
          keepTail(d);
          ctx.log(1, d);
        },
        stderr: (d) => {
          keepTail(d);
          ctx.log(2, d);
        },
        signal: ctx.signal,
      },
      { runtime: ctx.runtime, stateDir: join(store.root, 'state') },
    );
    if (res.exitCode !== 0) {
      const shown = op.args.join(' ');
      throw new StrataError('RUN_FAILED', `process "${shown}" did not complete successfully: exit code: ${res.exitCode}`, {
        position: vertex.location && { file: vertex.location.file, line: vertex.location.line },
        hint: tail.length ? `last output lines:\n  ${tail.join('\n  ')}` : 'the step printed nothing',
      });
    }
    await root.release({ keepUpper: true });
    committed = true;
    return await commitUpper(store, root.upper, root.lowers, {
      ...ctx.commit,
      mountpoints: [...mounts.map((m) => m.target), op.cwd, '/etc/resolv.conf', '/etc/hosts', '/etc/hostname'],
    });
  } finally {
    if (!committed) await root.release().catch(() => undefined);
    for (const c of cleanups.reverse()) await c();
  }
}

/** A host directory for a bind/cache source: the build context, or another chain mounted read-only. */
async function sourceDir(
  from: import('../graph/ops.js').FileSource,
  path: string,
  inputs: LayerInfo[][],
  ctx: ExecContext,
  cleanups: (() => Promise<void> | void)[],
): Promise<string> {
  if (from.kind === 'context') {
    const dir = ctx.contextDirs[from.name];
    if (!dir) throw new StrataError('NO_CONTEXT', `build context "${from.name}" was not provided`, { hint: `pass --build-context ${from.name}=DIR` });
    return resolveInRoot(dir, path);
  }
  const m: MountedChain = await mountChain(ctx.store, inputs[from.index]!, 'bindsrc');
  cleanups.push(() => m.release());
  return resolveInRoot(m.merged, path);
}
