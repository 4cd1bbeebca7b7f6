// COPY and ADD into a target rootfs with BuildKit's rules (fsutil copy as dockerfile2llb calls it):
// a named dir lends its contents, a named symlink is followed, symlinks below are kept; dest ending
// in `/` (or an existing dir) receives files by name; missing parents are created 0755 (or the
// octal --chmod) owned by root or --chown; copies keep mode, times and, from a rootfs, owners.
import * as fs from 'node:fs';
import { promises as fsp, type Stats } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setAttributeSync } from 'fs-xattr';
import { StrataError } from '../errors.js';
import { loadXattrs, readXattrs } from '../context/checksum.js';
import { deviceNumbers, goClean, kindOf, Pacer, resolveInside, selectSource, type IgnoreFn, type Reinclude, type SelectedSource, type TreeEntry } from '../context/walk.js';
import { detectArchive, extractArchive, mknodLike } from './archive.js';
import { parseChmod, type Chmod } from './chmod.js';
import { prepareCopyWorkers, runFileJobs } from './copy-workers.js';
import type { FileJob, FileOpJob, SymlinkJob } from './file-jobs.js';
import { downloadUrl, isUrlSource, type Downloaded } from './http.js';
import { finishDeferred, type CopyReuse, type DeferredFile, type LinkStats } from './link-reuse.js';
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
  /** URL sources already fetched with downloadUrl (the solver needs their digest for the cache key first). */
  prefetched?: Record<string, Downloaded>;
  /** COPY <<NAME dest: a file NAME with this content. */
  heredocs?: { name: string; content: string }[];
  /**
   * An earlier result of the same step to hard-link unchanged files from (context sources only).
   * Those files are left out of destRoot; CopyResult.finish puts them into the unmounted upper.
   */
  reuse?: CopyReuse;
  /**
   * The upper dir of the overlay mounted at destRoot. Creating a file through overlayfs costs more
   * than on the upper's own filesystem (`cp -a` of 5,000 small files: about twice as long here), so
   * a copy of one source tree writes what goes into directories it created itself straight into the
   * upper (see copyTree for when that is safe).
   */
  destUpper?: string;
  /**
   * What source words select, as the walk that computed the step's cache key found it (context
   * sources only, same ignore rules): the copy takes these entries instead of walking again, so it
   * writes exactly what the key covers; the check after the copy (each file it read, stat against
   * this walk's) catches a file changed since.
   */
  selected?: ReadonlyMap<string, SelectedSource>;
}

export interface CopyResult {
  copied: number;
  /**
   * Set when files were left for later (see CopyRequest.reuse): call with the step's upper dir once
   * the overlay is unmounted; it links them from the earlier layer or copies them.
   */
  finish?: (upper: string) => Promise<LinkStats>;
  /** Entries created directly in CopyRequest.destUpper (not through the mount). */
  intoUpper: number;
}

interface Leaf {
  kind: 'tree';
  base: string;
  /** The source match's name as the context checksum names its paths (context matches only). */
  matchName?: string;
  root: TreeEntry;
  entries: TreeEntry[];
  keepOwner: boolean;
  xattrs: boolean;
  archive?: boolean;
}

/**
 * Where the first copy of a hard-linked source file went. A link must be made on the same side as
 * its new name (link(2) from the mount into its upper is EXDEV): `merged` when it was created
 * through the mount, `upper` when it is in (or was created directly in) the upper dir.
 */
interface FirstLink {
  merged?: string;
  upper?: string;
}

interface Ctx {
  req: CopyRequest;
  chmod?: Chmod;
  dirPerm: number;
  inodes: Map<string, FirstLink>;
  /** req.destUpper when this copy may write into it (one source tree only), else undefined. */
  destUpper?: string;
  intoUpper: number;
  copied: number;
  /** Files left for CopyResult.finish, with the times of the directories holding them. */
  deferred: DeferredFile[];
  dirTimes: Map<string, [number, number]>;
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

function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return undefined;
    throw e;
  }
}

function display(destRoot: string, host: string): string {
  return '/' + path.relative(destRoot, host).split(path.sep).join('/');
}

function ensureEmptyFileTarget(ctx: Ctx, target: string): void {
  const st = lstatOrUndefined(target);
  if (!st) return;
  if (st.isDirectory()) {
    throw new StrataError('COPY_DEST_CONFLICT', `cannot replace to directory ${display(ctx.req.destRoot, target)} with file`, {
      hint: 'The destination already has a directory where a file would go; pick another destination or end it with / to copy into the directory.',
    });
  }
  fs.unlinkSync(target);
}

/** Create (or reuse) a dir for a source dir; returns whether it was created. */
function copyDirOnly(ctx: Ctx, target: string, st: Stats, overwrite: boolean): boolean {
  const cur = lstatOrUndefined(target);
  if (!cur) {
    fs.mkdirSync(target, { mode: st.mode & 0o777 });
    return true;
  }
  if (!cur.isDirectory()) {
    throw new StrataError('COPY_DEST_CONFLICT', `cannot copy to non-directory: ${display(ctx.req.destRoot, target)}`, {
      hint: 'A file or symlink in the destination is where the source has a directory; remove it first or copy elsewhere.',
    });
  }
  if (overwrite) fs.chmodSync(target, st.mode & 0o7777);
  return false;
}

const SELF = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

function copyXattrs(from: string, to: string): void {
  for (const [k, v] of Object.entries(readXattrs(from) ?? {})) {
    try {
      setAttributeSync(to, k, Buffer.from(v, 'hex'));
    } catch {
      // Best effort, as BuildKit's copy: a filesystem may refuse a namespace.
    }
  }
}

/**
 * Owner, mode, xattrs and times of a copied entry (dirs, special files, hard links). `fresh` says
 * the target was just made by us (so it is ours): that saves a chown.
 */
function applyInfo(ctx: Ctx, leaf: Leaf, e: TreeEntry, target: string, fresh = false): void {
  const st = e.st;
  const owner = ctx.req.chown ?? (leaf.keepOwner ? { uid: st.uid, gid: st.gid } : { uid: 0, gid: 0 });
  if (!fresh || owner.uid !== SELF.uid || owner.gid !== SELF.gid) fs.lchownSync(target, owner.uid, owner.gid);
  if (e.kind !== 'symlink') {
    // Always set: creation applied the umask, and chown clears setuid/setgid.
    fs.chmodSync(target, ctx.chmod ? ctx.chmod.apply(st.mode & 0o7777, e.kind === 'dir') : st.mode & 0o7777);
    if (leaf.xattrs && (e.kind === 'file' || e.kind === 'dir')) copyXattrs(e.host, target);
  }
  fs.lutimesSync(target, st.atimeMs / 1000, st.mtimeMs / 1000);
}

/**
 * Regular files and symlinks of one copyTree, created together (see copy-workers.ts), then what must
 * wait for them: hard links to a file of the batch and xattrs (fs-xattr stays on the main thread).
 */
interface Batch {
  jobs: FileOpJob[];
  after: (() => void)[];
}

/** The owner applyInfo would give `e`, or undefined where a fresh entry already has it. */
function freshOwner(ctx: Ctx, leaf: Leaf, e: TreeEntry): { uid: number; gid: number } | undefined {
  const owner = ctx.req.chown ?? (leaf.keepOwner ? { uid: e.st.uid, gid: e.st.gid } : { uid: 0, gid: 0 });
  return owner.uid !== SELF.uid || owner.gid !== SELF.gid ? { uid: owner.uid, gid: owner.gid } : undefined;
}

function fileJob(ctx: Ctx, leaf: Leaf, e: TreeEntry, target: string): FileJob {
  const st = e.st;
  const mode = ctx.chmod ? ctx.chmod.apply(st.mode & 0o7777, false) : st.mode & 0o7777;
  return { kind: 'file', src: e.host, dst: target, size: st.size, mode, owner: freshOwner(ctx, leaf, e), atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 };
}

function symlinkJob(ctx: Ctx, leaf: Leaf, e: TreeEntry, target: string): SymlinkJob {
  return { kind: 'symlink', target: e.link ?? fs.readlinkSync(e.host), dst: target, owner: freshOwner(ctx, leaf, e), atime: e.st.atimeMs / 1000, mtime: e.st.mtimeMs / 1000 };
}

/**
 * Queues a regular file or symlink on `batch` (its target is free); false for other kinds.
 * `inUpper`: target is a path in the upper dir, not through the mount.
 */
function queueLeaf(ctx: Ctx, leaf: Leaf, e: TreeEntry, target: string, batch: Batch, inUpper: boolean): boolean {
  switch (e.kind) {
    case 'file': {
      const key = `${e.st.dev}:${e.st.ino}`;
      const first = e.st.nlink > 1 ? ctx.inodes.get(key) : undefined;
      if (first !== undefined) {
        const from = inUpper ? first.upper : first.merged;
        // copyTree keeps the upper out of directories where this could happen.
        if (from === undefined) throw new Error(`internal error: no ${inUpper ? 'upper' : 'merged'} path to hard-link ${target} to`);
        batch.after.push(() => {
          fs.linkSync(from, target);
          applyInfo(ctx, leaf, e, target, true);
        });
      } else {
        batch.jobs.push(fileJob(ctx, leaf, e, target));
        if (leaf.xattrs) batch.after.push(() => copyXattrs(e.host, target));
        if (e.st.nlink > 1) ctx.inodes.set(key, inUpper ? { upper: target } : { merged: target, upper: upperPathOf(ctx, target) });
      }
      ctx.copied++;
      return true;
    }
    case 'symlink':
      batch.jobs.push(symlinkJob(ctx, leaf, e, target));
      ctx.copied++;
      return true;
    default:
      return false;
  }
}

/**
 * The upper-dir path of a file this copy created through the mount: overlayfs created it there
 * (a new file is never a lower's), under the same relative path.
 */
function upperPathOf(ctx: Ctx, merged: string): string | undefined {
  return ctx.destUpper === undefined ? undefined : path.join(ctx.destUpper, path.relative(ctx.req.destRoot, merged));
}

/**
 * Copy a non-directory; `inFreshDir` says its parent was created by this copy (nothing to replace),
 * `inUpper` that target is in the upper dir. Regular files and symlinks are queued on `batch`; the
 * caller runs it before touching their dirs.
 */
async function copyLeaf(ctx: Ctx, leaf: Leaf, e: TreeEntry, target: string, batch: Batch, inFreshDir = false, inUpper = false): Promise<void> {
  if (!inFreshDir) ensureEmptyFileTarget(ctx, target);
  if (queueLeaf(ctx, leaf, e, target, batch, inUpper)) return;
  switch (e.kind) {
    case 'socket':
      // The build context cannot carry sockets; BuildKit delivers them as empty files.
      fs.writeFileSync(target, '');
      break;
    case 'fifo':
      await mknodLike(target, 'p');
      break;
    case 'char':
    case 'block': {
      const { major, minor } = deviceNumbers(e.st.rdev);
      await mknodLike(target, e.kind === 'char' ? 'c' : 'b', major, minor);
      break;
    }
    default:
      throw new Error(`unexpected entry kind ${e.kind}`);
  }
  applyInfo(ctx, leaf, e, target, true);
  ctx.copied++;
}

async function runBatch(batch: Batch): Promise<void> {
  await runFileJobs(batch.jobs);
  for (const f of batch.after) f();
}

/** Files of a tree that have another name in it (nlink > 1): their indices, and each inode's last index. */
interface LinkGroups {
  members: number[];
  last: Map<string, number>;
}

function linkGroups(entries: TreeEntry[]): LinkGroups | undefined {
  let groups: LinkGroups | undefined;
  for (let k = 0; k < entries.length; k++) {
    const e = entries[k]!;
    if (e.kind !== 'file' || e.st.nlink < 2) continue;
    groups ??= { members: [], last: new Map() };
    groups.members.push(k);
    groups.last.set(`${e.st.dev}:${e.st.ino}`, k);
  }
  return groups;
}

/** Whether a file below the dir entries[k] has a hard link that comes after k's subtree (entries are pre-order). */
function linkedPastSubtree(groups: LinkGroups | undefined, entries: TreeEntry[], k: number): boolean {
  if (!groups) return false;
  const { members, last } = groups;
  let lo = 0;
  let hi = members.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (members[mid]! <= k) lo = mid + 1;
    else hi = mid;
  }
  const prefix = entries[k]!.rel + '/';
  for (let i = lo; i < members.length; i++) {
    const e = entries[members[i]!]!;
    if (!e.rel.startsWith(prefix)) break;
    if (!entries[last.get(`${e.st.dev}:${e.st.ino}`)!]!.rel.startsWith(prefix)) return true;
  }
  return false;
}

/**
 * fsutil's Copy for one resolved source: place it at `destIn`, then copy the tree.
 *
 * With ctx.destUpper, entries below a directory this copy created through the mount go straight
 * into the overlay's upper dir, under the same relative path. The kernel leaves changes to a mounted
 * overlay's layers undefined for what the overlay has cached; here it has cached nothing: such a
 * directory showed no lower entry when it was created, so overlayfs keeps no lower for it and its
 * upper dir alone is its content, the names below it were never looked up through the mount, and
 * nothing looks them up there later (their metadata goes on through the same upper paths; the mount
 * is only unmounted afterwards). What lands in the upper is what overlayfs would have created there:
 * a plain mkdir, create, symlink, mknod or link with the same owner and mode (whatever overlayfs
 * adds to a new dir in a dir the lowers have, such as an opaque mark over a whiteout, it adds to
 * the one created through the mount; below that there is no lower to mark). Hard links: see
 * FirstLink; a created dir with a file whose inode gets another name after the dir's subtree keeps
 * its entries on the mount (that later name may be through the mount, and the first copy must then
 * be there too). Only one source tree per copy (see copyFiles).
 */
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
  const madeParents = await mkdirAllHost(parent, ctx.dirPerm, owner);

  const batch: Batch = { jobs: [], after: [] };
  if (!srcIsDir) {
    await copyLeaf(ctx, leaf, leaf.root, dst, batch);
    await runBatch(batch);
    return;
  }

  const rootCreated = copyDirOnly(ctx, dst, leaf.root.st, false);
  // Linking unchanged files from an earlier layer (link-reuse.ts) happens only in directories this
  // copy creates: nothing of the lowers shows there, so the upper alone is the result.
  const reuse = ctx.req.reuse && leaf.matchName !== undefined && !leaf.keepOwner && !leaf.xattrs ? ctx.req.reuse : undefined;
  const srcPrefix = leaf.matchName ? `${leaf.matchName}/` : '';
  const dstRel = path.relative(ctx.req.destRoot, dst).split(path.sep).join('/');
  const dstRelPrefix = dstRel === '' ? '' : `${dstRel}/`;
  // Dir metadata goes on after the contents (writing children moves a dir's mtime).
  const dirsDone: { e: TreeEntry; target: string; created: boolean }[] = [];
  const freshDirs = new Set<string>();
  // A destination dir just made by mkdirAllHost is as empty as one copyDirOnly made.
  if (rootCreated || madeParents.includes(dst)) freshDirs.add('');
  // The fresh dirs whose entries go into the upper dir (see above).
  const upperDirs = new Set<string>();
  const upperPrefix = ctx.destUpper === undefined ? undefined : `${ctx.destUpper}/${dstRelPrefix}`;
  const groups = upperPrefix === undefined ? undefined : linkGroups(leaf.entries);
  // Every entry is below the root: no link can come after its subtree.
  if (upperPrefix !== undefined && freshDirs.has('')) upperDirs.add('');
  const freshStat = new Map<string, Stats>();
  if (freshDirs.has('')) freshStat.set('', leaf.root.st);
  const pause = new Pacer();
  // dst is clean and rel a plain relative path: concatenation is path.join's result, much cheaper.
  const dstPrefix = dst.endsWith('/') ? dst : dst + '/';
  for (let k = 0; k < leaf.entries.length; k++) {
    if ((k & 63) === 0 && pause.due()) await pause.maybe();
    const e = leaf.entries[k]!;
    const slash = e.rel.lastIndexOf('/');
    const parentRel = slash < 0 ? '' : e.rel.slice(0, slash);
    const inFresh = freshDirs.has(parentRel);
    const inUpper = inFresh && upperPrefix !== undefined && upperDirs.has(parentRel);
    const target = (inUpper ? upperPrefix : dstPrefix) + e.rel;
    if (e.kind === 'dir') {
      const created = inFresh ? (fs.mkdirSync(target, { mode: e.st.mode & 0o777 }), true) : copyDirOnly(ctx, target, e.st, true);
      if (created) {
        freshDirs.add(e.rel);
        if (inUpper || (upperPrefix !== undefined && !linkedPastSubtree(groups, leaf.entries, k))) upperDirs.add(e.rel);
      }
      if (created && reuse) freshStat.set(e.rel, e.st);
      if (!e.parentOnly || created) dirsDone.push({ e, target, created });
      if (inUpper) ctx.intoUpper++;
      ctx.copied++;
      continue;
    }
    if (e.kind === 'file' || e.kind === 'symlink') {
      // The common kinds without a promise per entry.
      if (!inFresh) ensureEmptyFileTarget(ctx, target);
      else if (reuse && e.kind === 'file' && e.st.nlink === 1 && reuse.unchanged(srcPrefix + e.rel)) {
        const pst = freshStat.get(parentRel)!;
        ctx.dirTimes.set(dstRel === '' ? parentRel : parentRel === '' ? dstRel : `${dstRel}/${parentRel}`, [pst.atimeMs / 1000, pst.mtimeMs / 1000]);
        ctx.deferred.push({ job: fileJob(ctx, leaf, e, target), rel: dstRelPrefix + e.rel });
        ctx.copied++;
        continue;
      }
      queueLeaf(ctx, leaf, e, target, batch, inUpper);
    } else await copyLeaf(ctx, leaf, e, target, batch, inFresh, inUpper);
    if (inUpper) ctx.intoUpper++;
  }
  await runBatch(batch);
  for (const d of dirsDone.reverse()) applyInfo(ctx, leaf, d.e, d.target, d.created);
  if (rootCreated) applyInfo(ctx, leaf, leaf.root, dst, true);
  else fs.lutimesSync(dst, leaf.root.st.atimeMs / 1000, leaf.root.st.mtimeMs / 1000);
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
  if (req.srcIsRootfs) await loadXattrs();
  const chmod = req.chmod !== undefined && req.chmod !== '' ? parseChmod(req.chmod) : undefined;
  const ctx: Ctx = {
    req,
    chmod,
    dirPerm: chmod?.octal !== undefined ? chmod.octal & 0o777 : 0o755,
    inodes: new Map(),
    intoUpper: 0,
    copied: 0,
    deferred: [],
    dirTimes: new Map(),
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
        const pre = req.prefetched?.[word];
        const dl = pre ?? (await downloadUrl(word, dir, req.checksum));
        const named = path.join(dir, dl.filename);
        if (pre) await fsp.copyFile(pre.file, named);
        else await fsp.rename(dl.file, named);
        const when = dl.lastModified ?? new Date();
        await fsp.utimes(named, when, when);
        const root = await syntheticFile(dir, dl.filename, undefined, 0o600);
        const archive = req.unpack === true && (await detectArchive(named)) !== undefined;
        leaves.push({ kind: 'tree', base: dl.filename, root, entries: [], keepOwner: false, xattrs: false, archive });
        continue;
      }
      const sel = (!req.srcIsRootfs && req.selected?.get(word)) || await selectSource(word, {
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
        leaves.push({ kind: 'tree', base, matchName: req.srcIsRootfs ? undefined : m.name, root: m.root, entries: m.entries, keepOwner: req.srcIsRootfs, xattrs: req.srcIsRootfs, archive });
      }
    }
    for (const h of req.heredocs ?? []) {
      const dir = path.join(tmp, `heredoc${n++}`);
      await fsp.mkdir(dir);
      const root = await syntheticFile(dir, h.name, h.content, 0o644);
      leaves.push({ kind: 'tree', base: h.name, root, entries: [], keepOwner: false, xattrs: false });
    }

    // Start worker threads now for a big copy: they boot while the destination dirs are made.
    prepareCopyWorkers(leaves.reduce((n, l) => n + 1 + l.entries.length, 0));

    if (leaves.length > 1 && !destIn.dirLike && leaves.some((l) => l.root.kind !== 'dir' && !l.archive)) {
      const existing = await resolveInside(req.destRoot, destIn.path);
      if (!existing.lstat?.isDirectory()) throw tooMany(req.isAdd ?? false);
    }

    // With several sources a later one may overwrite an earlier one's file: no deferring then. Nor
    // writing into the upper: a later source resolves its destination through the mount, maybe
    // into directories an earlier one filled behind the overlay's back.
    if (leaves.length !== 1) ctx.req = { ...req, reuse: undefined };
    else ctx.destUpper = req.destUpper;
    for (const leaf of leaves) {
      if (leaf.archive) {
        const { host } = await mkdirAllInside(req.destRoot, destIn.path, 0o755, req.chown);
        ctx.copied += await extractArchive(leaf.root.host, host, { chown: req.chown });
        continue;
      }
      await copyTree(ctx, leaf, destIn);
    }
    const { deferred, dirTimes } = ctx;
    const reuse = ctx.req.reuse;
    const { copied, intoUpper } = ctx;
    if (!reuse || deferred.length === 0) return { copied, intoUpper };
    return { copied, intoUpper, finish: (upper) => finishDeferred(reuse, upper, deferred, dirTimes) };
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
