// Shared by the snapshot tests: temp dirs that clean up their mounts, tars built with
// tar-stream (an independent implementation), tree snapshots to compare filesystems.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { listAttributesSync, getAttributeSync } from 'fs-xattr';
import tarStream from 'tar-stream';

export const isRoot = process.getuid?.() === 0;

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

export function isMounted(path: string): boolean {
  return mountsUnder(path).includes(path);
}

/** A fresh dir under /tmp; `cleanup` unmounts whatever is still mounted below it, then removes it. */
export function tempDir(tag: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(`/tmp/strata-snap-${tag}-`);
  return {
    dir,
    cleanup: () => {
      for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TarSpec {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  data?: string | Buffer;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /** pax records, e.g. SCHILY.xattr.user.x */
  pax?: Record<string, string>;
}

/** A tar archive built by tar-stream. */
export async function buildTar(specs: TarSpec[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const s of specs) {
    const type = s.type ?? 'file';
    const header = {
      name: s.name,
      type,
      mode: s.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: s.uid ?? 0,
      gid: s.gid ?? 0,
      mtime: new Date((s.mtime ?? 1_600_000_000) * 1000),
      linkname: s.linkname,
      devmajor: s.devmajor,
      devminor: s.devminor,
      pax: s.pax,
    } as tarStream.Header;
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (type === 'file') pack.entry(header, typeof s.data === 'string' ? Buffer.from(s.data) : (s.data ?? Buffer.alloc(0)), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export function streamOf(buf: Buffer): Readable {
  // small chunks so that headers straddle chunk boundaries
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 700) parts.push(buf.subarray(i, i + 700));
  return Readable.from(parts);
}

export interface ParsedEntry {
  name: string;
  type: string;
  linkname: string | null;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  uname: string;
  gname: string;
  pax: Record<string, string>;
  data: Buffer;
}

/** Reads a (possibly compressed) tar with tar-stream. */
export async function parseTar(blob: Buffer): Promise<ParsedEntry[]> {
  let tar = blob;
  if (blob[0] === 0x1f && blob[1] === 0x8b) tar = zlib.gunzipSync(blob);
  else if (blob.readUInt32LE(0) === 0xfd2fb528) tar = spawnSync('zstd', ['-d', '-c', '-q'], { input: blob, maxBuffer: 1 << 30 }).stdout;
  const extract = tarStream.extract();
  const out: ParsedEntry[] = [];
  Readable.from([tar]).pipe(extract as unknown as NodeJS.WritableStream);
  const feeding = extract;
  for await (const entry of feeding) {
    const data: Buffer[] = [];
    for await (const c of entry) data.push(c as Buffer);
    const h = entry.header as Partial<tarStream.Header> & { pax?: Record<string, string> | null };
    out.push({
      name: h.name ?? "",
      type: h.type ?? '',
      linkname: h.linkname ?? null,
      mode: h.mode ?? 0,
      uid: h.uid ?? 0,
      gid: h.gid ?? 0,
      mtime: (h.mtime?.getTime() ?? 0) / 1000,
      size: h.size ?? 0,
      uname: h.uname ?? '',
      gname: h.gname ?? '',
      pax: h.pax ?? {},
      data: Buffer.concat(data),
    });
  }
  return out;
}

export interface NodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  content?: string;
  target?: string;
  rdev?: number;
  xattrs: Record<string, string>;
  ino: number;
}

function typeOf(st: Stats): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

export function xattrsOf(p: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of listAttributesSync(p).sort()) out[name] = getAttributeSync(p, name).toString('hex');
  return out;
}

/** Every path under root (not root itself) with what a container would observe there. */
export function snapshotTree(root: string): Map<string, NodeInfo> {
  const out = new Map<string, NodeInfo>();
  const visit = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = lstatSync(p);
      const type = typeOf(st);
      const info: NodeInfo = {
        type,
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        mtimeSec: Math.floor(st.mtimeMs / 1000),
        xattrs: type === 'symlink' || type === 'socket' ? {} : xattrsOf(p),
        ino: st.ino,
      };
      if (type === 'file') info.content = createHash('sha256').update(readFileSync(p)).digest('hex');
      if (type === 'symlink') info.target = readlinkSync(p);
      if (type === 'char' || type === 'block') info.rdev = st.rdev;
      out.set(r, info);
      if (type === 'dir') visit(r);
    }
  };
  visit('');
  return out;
}

/** Paths whose observable state differs (ino excluded); `dirMtimes` false ignores directory mtimes. */
export function treeDifferences(a: Map<string, NodeInfo>, b: Map<string, NodeInfo>): string[] {
  const diffs: string[] = [];
  for (const p of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(p);
    const y = b.get(p);
    if (!x || !y) {
      diffs.push(`${p}: ${x ? 'only in first' : 'only in second'}`);
      continue;
    }
    const { ino: _i, ...xs } = x;
    const { ino: _j, ...ys } = y;
    if (JSON.stringify(xs) !== JSON.stringify(ys)) diffs.push(`${p}: ${JSON.stringify(xs)} != ${JSON.stringify(ys)}`);
  }
  return diffs.sort();
}

/** Groups of paths that are hard links of each other (files only). */
export function hardlinkGroups(tree: Map<string, NodeInfo>): string[][] {
  const byIno = new Map<number, string[]>();
  for (const [p, n] of tree) {
    if (n.type !== 'file') continue;
    byIno.set(n.ino, [...(byIno.get(n.ino) ?? []), p]);
  }
  return [...byIno.values()].filter((g) => g.length > 1).map((g) => g.sort()).sort();
}

export function sh(cmd: string, cwd?: string): string {
  const r = spawnSync('sh', ['-c', cmd], { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Path order of a layer: components compared bytewise, a directory before what it holds. */
export function pathOrder(a: string, b: string): number {
  const pa = a.replace(/\/$/, '').split('/');
  const pb = b.replace(/\/$/, '').split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = Buffer.from(pa[i]!);
    const y = Buffer.from(pb[i]!);
    const c = Buffer.compare(x, y);
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}
