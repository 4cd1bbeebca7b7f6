// ADD of a local tar archive: recognised by content (gzip, bzip2, xz, zstd or plain tar, whatever
// the name), extracted as BuildKit's chrooted untar does: every entry and every symlink it meets,
// old or new, stays inside the destination directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { setAttribute } from 'fs-xattr';
import * as tar from 'tar-stream';
import { StrataError } from '../errors.js';
import { goClean, resolveInside } from '../context/walk.js';
import { mkdirAllInside } from './mkdir.js';

export type Compression = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'none';

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

function sniff(head: Buffer): Compression {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(XZ_MAGIC)) return 'xz';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

const TOOL: Record<Exclude<Compression, 'gzip' | 'none'>, string> = { bzip2: 'bzip2', xz: 'xz', zstd: 'zstd' };

interface Opened {
  stream: Readable;
  child?: ChildProcess;
  close(): void;
}

function openDecompressed(file: string, kind: Compression): Opened {
  const raw = createReadStream(file);
  if (kind === 'none') return { stream: raw, close: () => raw.destroy() };
  if (kind === 'gzip') {
    const gz = createGunzip();
    raw.on('error', (e) => gz.destroy(e));
    raw.pipe(gz);
    return { stream: gz, close: () => { raw.destroy(); gz.destroy(); } };
  }
  const child = spawn(TOOL[kind], ['-d', '-c'], { stdio: ['pipe', 'pipe', 'ignore'] });
  raw.on('error', () => child.kill());
  child.stdin.on('error', () => undefined); // the reader may stop early (EPIPE)
  raw.pipe(child.stdin);
  const out = child.stdout;
  return {
    stream: out,
    child,
    close: () => {
      raw.destroy();
      out.destroy();
      child.kill();
    },
  };
}

async function readHead(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let len = 0;
  try {
    for await (const c of stream) {
      chunks.push(c as Buffer);
      len += (c as Buffer).length;
      if (len >= n) break;
    }
  } catch {
    // A decompression error means "not an archive", like Go's DecompressStream failing.
  }
  return Buffer.concat(chunks).subarray(0, n);
}

function validTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  if (block.every((b) => b === 0)) return false;
  const field = block.toString('latin1', 148, 156).replace(/\0.*$/s, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const want = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

/** The compression of a tar archive at `file`, or undefined when it is not one (then ADD copies it as a file). */
export async function detectArchive(file: string): Promise<Compression | undefined> {
  const fh = await fsp.open(file, 'r');
  let head: Buffer;
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, 8, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  const kind = sniff(head);
  const opened = openDecompressed(file, kind);
  try {
    const block = await readHead(opened.stream, 512);
    return validTarHeader(block) ? kind : undefined;
  } finally {
    opened.close();
  }
}

export interface ExtractOptions {
  /** Numeric owner for every entry (ADD --chown); otherwise the archive's own uid/gid. */
  chown?: { uid: number; gid: number };
}

function unsafe(archive: string, msg: string): StrataError {
  return new StrataError('ADD_UNSAFE_ARCHIVE', `failed to extract ${archive}: ${msg}`, {
    hint: 'The archive has an entry that would land outside the destination; rebuild it with relative paths.',
  });
}

async function removeUnlessMergeableDir(p: string, isDir: boolean): Promise<void> {
  let st;
  try {
    st = await fsp.lstat(p);
  } catch {
    return;
  }
  if (st.isDirectory() && isDir) return;
  await fsp.rm(p, { recursive: true, force: true });
}

export async function mknodLike(p: string, type: 'c' | 'b' | 'p', major = 0, minor = 0): Promise<void> {
  const args = type === 'p' ? [p, 'p'] : [p, type, String(major), String(minor)];
  await new Promise<void>((resolve, reject) => {
    const child = spawn('mknod', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`mknod ${p}: ${err.trim()}`))));
  });
}

/**
 * Extract a (possibly compressed) tar archive into the existing host directory `destDir`, treating
 * it as the root for every path and link (absolute link targets and `..` cannot leave it).
 */
export async function extractArchive(file: string, destDir: string, opts: ExtractOptions = {}): Promise<number> {
  const kind = await detectArchive(file);
  if (kind === undefined) throw new StrataError('ADD_NOT_ARCHIVE', `${file} is not a tar archive`);
  const opened = openDecompressed(file, kind);
  const extract = tar.extract();
  const label = path.basename(file);
  const dirTimes: { p: string; atime: Date; mtime: Date }[] = [];
  let count = 0;
  const feeding = pipeline(opened.stream, extract).catch((e: unknown) => {
    extract.destroy(e as Error);
  });
  try {
    for await (const entry of extract) {
      const h = entry.header;
      try {
        const name = goClean(h.name.replace(/^\/+/, ''));
        if (name === '..' || name.startsWith('../')) throw unsafe(label, `${JSON.stringify(h.name)} is outside of the destination`);
        if (name === '.') continue;
        const type = h.type ?? 'file';
        const parentRel = path.posix.dirname(name);
        const parent = await resolveInside(destDir, parentRel === '.' ? '' : parentRel);
        if (!parent.lstat) await mkdirAllInside(destDir, parent.rel, 0o755);
        else if (!parent.lstat.isDirectory()) throw unsafe(label, `${JSON.stringify(h.name)}: parent is not a directory`);
        const target = path.join(parent.host, path.posix.basename(name));
        await removeUnlessMergeableDir(target, type === 'directory');
        switch (type) {
          case 'directory':
            await fsp.mkdir(target, { mode: 0o755 }).catch((e: { code?: string }) => {
              if (e.code !== 'EEXIST') throw e;
            });
            break;
          case 'file':
          case 'contiguous-file':
            await pipeline(entry, createWriteStream(target, { mode: 0o600 }));
            break;
          case 'link': {
            const ln = goClean((h.linkname ?? '').replace(/^\/+/, ''));
            if (ln === '..' || ln.startsWith('../')) throw unsafe(label, `invalid hardlink ${JSON.stringify(h.name)} -> ${JSON.stringify(h.linkname)}`);
            const lp = path.posix.dirname(ln);
            const ldir = await resolveInside(destDir, lp === '.' ? '' : lp);
            await fsp.link(path.join(ldir.host, path.posix.basename(ln)), target);
            break;
          }
          case 'symlink': {
            const ln = h.linkname ?? '';
            if (!ln.startsWith('/')) {
              const joined = goClean(path.posix.join(parentRel, ln));
              if (joined === '..' || joined.startsWith('../')) {
                throw unsafe(label, `invalid symlink ${JSON.stringify(h.name)} -> ${JSON.stringify(ln)}`);
              }
            }
            await fsp.symlink(ln, target);
            break;
          }
          case 'character-device':
            await mknodLike(target, 'c', h.devmajor, h.devminor);
            break;
          case 'block-device':
            await mknodLike(target, 'b', h.devmajor, h.devminor);
            break;
          case 'fifo':
            await mknodLike(target, 'p');
            break;
          default:
            throw new StrataError('ADD_BAD_ARCHIVE', `failed to extract ${label}: unhandled tar header type ${type} for ${JSON.stringify(h.name)}`);
        }
        const uid = opts.chown ? opts.chown.uid : h.uid ?? 0;
        const gid = opts.chown ? opts.chown.gid : h.gid ?? 0;
        await fsp.lchown(target, uid, gid);
        const pax = (h as { pax?: Record<string, string> }).pax;
        if (type !== 'symlink') {
          await fsp.chmod(target, (h.mode ?? 0o644) & 0o7777);
          if (pax) {
            for (const [k, v] of Object.entries(pax)) {
              if (!k.startsWith('SCHILY.xattr.')) continue;
              await setAttribute(target, k.slice('SCHILY.xattr.'.length), Buffer.from(v, 'latin1')).catch(() => undefined);
            }
          }
        }
        const mtime = pax?.mtime ? new Date(parseFloat(pax.mtime) * 1000) : h.mtime ?? new Date();
        const atime = pax?.atime ? new Date(parseFloat(pax.atime) * 1000) : mtime;
        if (type === 'directory') dirTimes.push({ p: target, atime, mtime });
        else await fsp.lutimes(target, atime, mtime);
        count++;
      } finally {
        entry.resume();
      }
    }
  } finally {
    opened.close();
    await feeding;
  }
  for (const d of dirTimes.reverse()) await fsp.utimes(d.p, d.atime, d.mtime);
  return count;
}
