// COPY and ADD into a target rootfs with BuildKit's rules (fsutil copy as dockerfile2llb calls it):
// a named dir lends its contents, a named symlink is followed, symlinks below are kept; dest ending
// in `/` (or an existing dir) receives files by name; missing parents are created 0755 (or the
// octal --chmod) owned by root or --chown; copies keep mode, times and, from a rootfs, owners.
import { constants as fsc, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setAttribute } from 'fs-xattr';
import { StrataError } from '../errors.js';
import { readXattrs } from '../context/checksum.js';
import { goClean, kindOf, resolveInside, selectSource, type IgnoreFn, type Reinclude, type TreeEntry } from '../context/walk.js';
import { detectArchive, extractArchive, mknodLike } from './archive.js';
import { parseChmod, type Chmod } from './chmod.js';
import { downloadUrl, isUrlSource } from './http.js';
import { mkdirAllHost, mkdirAllInside, type Owner } from './mkdir.js';

export interface CopyRequest {
  /** Host dir: the context root or a merged rootfs. */
  srcRoot: string;
  /** true for --from=stage/image: symlinks resolve inside srcRoot, owners are kept. */
  srcIsRootfs: boolean;
  /** .dockerignore (context only): an ignored path does not exist. */
  ignore?: IgnoreFn;
  /** Whether an ignored dir may re-include paths below it (`!` rules), e.g. PatternMatcher.mayReinclude. */
  ignoreMayReinclude?: Reinclude;
  /** Expanded source words; wildcards per Go filepath.Match; http(s) URLs for ADD. */
  sources: string[];
  /** Expanded, in-container; relative dest is relative to workdir. */
  dest: string;
  /** Merged rootfs dir of the target. */
  destRoot: string;
  workdir: string;
  chown?: Owner;
  chmod?: string;
  excludes?: string[];
  parents?: boolean;
  isAdd?: boolean;
  /** ADD --checksum for a URL source. */
  checksum?: string;
  /** ADD --unpack: default true for local archives, false for URLs. */
  unpack?: boolean;
  /** COPY <<NAME dest: a file NAME with this content. */
  heredocs?: { name: string; content: string }[];
}

export interface CopyResult {
  copied: number;
}

const PARALLEL = 16;

interface Leaf {
  kind: 'tree';
  base: string;
  root: TreeEntry;
  entries: TreeEntry[];
  keepOwner: boolean;
  xattrs: boolean;
  archive?: boolean;
}

interface Ctx {
  req: CopyRequest;
  chmod?: Chmod;
  dirPerm: number;
  inodes: Map<string, Promise<string>>;
  copied: number;
}

/** In-container destination, absolute and cleaned, and whether it names a directory (`/`, `.`). */
export function containerDest(dest: string, workdir: string): { path: string; dirLike: boolean } {
  let d = dest;
  if (d === '' || d === '.') d = './';
  const dirLike = d.endsWith('/') || d.endsWith('/.');
  const abs = d.startsWith('/') ? d : path.posix.join(workdir || '/', d);
  return { path: goClean('/' + abs), dirLike };
}

function tooMany(isAdd: boolean): StrataError {
  const cmd = isAdd ? 'ADD' : 'COPY';
  return new StrataError('COPY_DEST_NOT_DIR', `When using ${cmd} with more than one source file, the destination must be a directory and end with a /`, {
    hint: `Add a trailing slash to the destination (${cmd} a b /dir/) so the files are copied into that directory.`,
  });
}

function errCode(e: unknown): string | undefined {
  return (e as { code?: string }).code;
}

async function lstatOrUndefined(p: string) {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return undefined;
    throw e;
  }
}

function display(destRoot: string, host: string): string {
  return '/' + path.relative(destRoot, host).split(path.sep).join('/');
}

async function ensureEmptyFileTarget(ctx: Ctx, target: string): Promise<void> {
  const st = await lstatOrUndefined(target);
  if (!st) return;
  if (st.isDirectory()) {
    throw new StrataError('COPY_DEST_CONFLICT', `cannot replace to directory ${display(ctx.req.destRoot, target)} with file`, {
      hint: 'The destination already has a directory where a file would go; pick another destination or end it with / to copy into the directory.',
    });
  }
  await fsp.unlink(target);
}

/** Create (or reuse) a dir for a source dir; returns whether it was created. */
async function copyDirOnly(ctx: Ctx, target: string, st: TreeEntry['st'], overwrite: boolean): Promise<boolean> {
  const cur = await lstatOrUndefined(target);
  if (!cur) {
    await fsp.mkdir(target, { mode: st.mode & 0o777 });
    return true;
  }
  if (!cur.isDirectory()) {
    throw new StrataError('COPY_DEST_CONFLICT', `cannot copy to non-directory: ${display(ctx.req.destRoot, target)}`, {
      hint: 'A file or symlink in the destination is where the source has a directory; remove it first or copy elsewhere.',
    });
  }
  if (overwrite) await fsp.chmod(target, st.mode & 0o7777);
  return false;
}

async function applyInfo(ctx: Ctx, leaf: Leaf, e: TreeEntry, target: string): Promise<void> {
  const st = e.st;
  const isLink = e.kind === 'symlink';
  const owner = ctx.req.chown ?? (leaf.keepOwner ? { uid: st.uid, gid: st.gid } : { uid: 0, gid: 0 });
  await fsp.lchown(target, owner.uid, owner.gid);
  if (!isLink) {
    const mode = ctx.chmod ? ctx.chmod.apply(st.mode & 0o7777, e.kind === 'dir') : st.mode & 0o7777;
    await fsp.chmod(target, mode);
    if (leaf.xattrs && (e.kind === 'file' || e.kind === 'dir')) {
      const xa = await readXattrs(e.host);
      for (const [k, v] of Object.entries(xa ?? {})) {
        await setAttribute(target, k, Buffer.from(v, 'hex')).catch(() => undefined);
      }
    }
  }
  await fsp.lutimes(target, st.atime, st.mtime);
}

async function copyLeaf(ctx: Ctx, leaf: Leaf, e: TreeEntry, target: string): Promise<void> {
  await ensureEmptyFileTarget(ctx, target);
  switch (e.kind) {
    case 'file': {
      if (e.st.nlink > 1) {
        const key = `${e.st.dev}:${e.st.ino}`;
        const first = ctx.inodes.get(key);
        if (first) {
          await fsp.link(await first, target);
          break;
        }
        let done!: (p: string) => void;
        ctx.inodes.set(key, new Promise<string>((r) => (done = r)));
        await fsp.copyFile(e.host, target, fsc.COPYFILE_FICLONE);
        done(target);
        break;
      }
      await fsp.copyFile(e.host, target, fsc.COPYFILE_FICLONE);
      break;
    }
    case 'symlink':
      await fsp.symlink(e.link ?? (await fsp.readlink(e.host)), target);
      break;
    case 'socket':
      // The build context cannot carry sockets; BuildKit delivers them as empty files.
      await fsp.writeFile(target, '');
      break;
    case 'fifo':
      await mknodLike(target, 'p');
      break;
    case 'char':
    case 'block':
      await mknodLike(target, e.kind === 'char' ? 'c' : 'b', Math.floor(e.st.rdev / 256), e.st.rdev % 256);
      break;
    default:
      throw new Error(`unexpected entry kind ${e.kind}`);
  }
  await applyInfo(ctx, leaf, e, target);
  ctx.copied++;
}

/** fsutil's Copy for one resolved source: place it at `destIn`, then copy the tree. */
async function copyTree(ctx: Ctx, leaf: Leaf, destIn: { path: string; dirLike: boolean }): Promise<void> {
  const { req } = ctx;
  const owner = req.chown;
  const ensure = destIn.dirLike ? destIn.path : path.posix.dirname(destIn.path);
  await mkdirAllInside(req.destRoot, ensure, ctx.dirPerm, owner);
  const resolved = await resolveInside(req.destRoot, destIn.path);
  let dst = resolved.host;
  const fiDest = resolved.lstat;
  const srcIsDir = leaf.root.kind === 'dir';
  if (!srcIsDir && fiDest?.isDirectory()) dst = path.join(dst, leaf.base);
  const parent = srcIsDir && !fiDest ? dst : path.dirname(dst);
  await mkdirAllHost(parent, ctx.dirPerm, owner);

  if (!srcIsDir) {
    await copyLeaf(ctx, leaf, leaf.root, dst);
    return;
  }

  const rootCreated = await copyDirOnly(ctx, dst, leaf.root.st, false);
  // Dir metadata goes on after the contents (writing children moves a dir's mtime).
  const dirsDone: { e: TreeEntry; target: string; full: boolean }[] = [];
  const inflight = new Set<Promise<void>>();
  try {
    for (const e of leaf.entries) {
      const target = path.join(dst, ...e.rel.split('/'));
      if (e.kind === 'dir') {
        const created = await copyDirOnly(ctx, target, e.st, true);
        if (!e.parentOnly || created) dirsDone.push({ e, target, full: true });
        ctx.copied++;
        continue;
      }
      while (inflight.size >= PARALLEL) await Promise.race(inflight);
      const p: Promise<void> = copyLeaf(ctx, leaf, e, target).finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
  } catch (e) {
    await Promise.allSettled(inflight);
    throw e;
  }
  for (const d of dirsDone.reverse()) await applyInfo(ctx, leaf, d.e, d.target);
  if (rootCreated) await applyInfo(ctx, leaf, leaf.root, dst);
  else await fsp.lutimes(dst, leaf.root.st.atime, leaf.root.st.mtime);
}

async function syntheticFile(dir: string, name: string, content: string | undefined, mode: number): Promise<TreeEntry> {
  const host = path.join(dir, name);
  if (content !== undefined) await fsp.writeFile(host, content);
  await fsp.chmod(host, mode);
  const st = await fsp.lstat(host);
  return { rel: '', host, st, kind: kindOf(st) };
}

function validate(req: CopyRequest): void {
  const urls = req.sources.filter(isUrlSource);
  if (!req.isAdd && urls.length > 0) {
    throw new StrataError('COPY_URL_SOURCE', "source can't be a URL for COPY", { hint: 'Use ADD to download a URL.' });
  }
  if (req.checksum !== undefined) {
    if (!req.isAdd) throw new StrataError('COPY_BAD_FLAG', "checksum can't be specified for COPY");
    if (req.sources.length !== 1) throw new StrataError('COPY_BAD_FLAG', "checksum can't be specified for multiple sources");
    if (urls.length !== 1) throw new StrataError('COPY_BAD_FLAG', 'checksum requires HTTP(S) or Git sources');
  }
  for (const u of urls) {
    if (/\.git(#.*)?$/.test(u)) {
      throw new StrataError('ADD_GIT_UNSUPPORTED', `ADD of a git repository is not supported: ${u}`, {
        hint: 'Clone the repository into the build context (or a --build-context dir) and COPY it.',
      });
    }
  }
}

/** Run one COPY/ADD into `req.destRoot`. */
export async function copyFiles(req: CopyRequest): Promise<CopyResult> {
  validate(req);
  const chmod = req.chmod !== undefined && req.chmod !== '' ? parseChmod(req.chmod) : undefined;
  const ctx: Ctx = {
    req,
    chmod,
    dirPerm: chmod?.octal !== undefined ? chmod.octal & 0o777 : 0o755,
    inodes: new Map(),
    copied: 0,
  };
  const destIn = containerDest(req.dest, req.workdir);
  const heredocNames = new Set((req.heredocs ?? []).map((h) => h.name));
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'strata-copy-'));
  try {
    const leaves: Leaf[] = [];
    let n = 0;
    for (const word of req.sources) {
      if (word.startsWith('<<') && heredocNames.has(word.slice(2).replace(/^-/, '').replace(/^["']|["']$/g, ''))) continue;
      if (isUrlSource(word)) {
        const dir = path.join(tmp, `url${n++}`);
        await fsp.mkdir(dir);
        const dl = await downloadUrl(word, dir, req.checksum);
        const named = path.join(dir, dl.filename);
        await fsp.rename(dl.file, named);
        const when = dl.lastModified ?? new Date();
        await fsp.utimes(named, when, when);
        const root = await syntheticFile(dir, dl.filename, undefined, 0o600);
        const archive = req.unpack === true && (await detectArchive(named)) !== undefined;
        leaves.push({ kind: 'tree', base: dl.filename, root, entries: [], keepOwner: false, xattrs: false, archive });
        continue;
      }
      const sel = await selectSource(word, {
        root: req.srcRoot,
        rootfs: req.srcIsRootfs,
        ignore: req.srcIsRootfs ? undefined : req.ignore,
        ignoreMayReinclude: req.ignoreMayReinclude,
        excludes: req.excludes,
        parents: req.parents,
      });
      for (const m of sel.matches) {
        const base = m.name === '' ? '/' : path.posix.basename(m.name);
        const archive = (req.isAdd ?? false) && req.unpack !== false && m.root.kind === 'file' && (await detectArchive(m.root.host)) !== undefined;
        leaves.push({ kind: 'tree', base, root: m.root, entries: m.entries, keepOwner: req.srcIsRootfs, xattrs: req.srcIsRootfs, archive });
      }
    }
    for (const h of req.heredocs ?? []) {
      const dir = path.join(tmp, `heredoc${n++}`);
      await fsp.mkdir(dir);
      const root = await syntheticFile(dir, h.name, h.content, 0o644);
      leaves.push({ kind: 'tree', base: h.name, root, entries: [], keepOwner: false, xattrs: false });
    }

    if (leaves.length > 1 && !destIn.dirLike && leaves.some((l) => l.root.kind !== 'dir' && !l.archive)) {
      const existing = await resolveInside(req.destRoot, destIn.path);
      if (!existing.lstat?.isDirectory()) throw tooMany(req.isAdd ?? false);
    }

    for (const leaf of leaves) {
      if (leaf.archive) {
        const { host } = await mkdirAllInside(req.destRoot, destIn.path, 0o755, req.chown);
        ctx.copied += await extractArchive(leaf.root.host, host, { chown: req.chown });
        continue;
      }
      await copyTree(ctx, leaf, destIn);
    }
    return { copied: ctx.copied };
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/**
 * WORKDIR: create `dir` (absolute, in-container) and missing parents, following the rootfs's own
 * symlinks, owned by `owner` (the current USER) or root. Returns whether anything was created.
 */
export async function ensureWorkdir(destRoot: string, dir: string, owner?: Owner): Promise<boolean> {
  const { created } = await mkdirAllInside(destRoot, goClean('/' + dir), 0o755, owner);
  return created.length > 0;
}
