// A layer that arrives as a blob (an imported cache, a pulled base image) kept as one read-only
// squashfs image in the store and loop-mounted where its unpacked directory would be, instead of
// being unpacked into files. Creating files is the slow part of unpacking on ext4 (55-290 µs per
// file, tens of thousands of files in a toolchain layer); writing one image file and mounting it
// costs a fraction of that. Everything that uses the layer's directory as an overlay lower keeps
// working: overlayfs takes whiteouts (0/0 character devices) and `trusted.overlay.opaque` from a
// squashfs lower as from any other.
//
// The tar is parsed, checked and rewritten into overlay form by the same code as the unpacker
// (overlay-rewrite.ts), so both accept and refuse the same layers; tar2sqfs (squashfs-tools-ng)
// only ever sees checked names. What the image cannot hold exactly (a sub-second or out-of-range
// mtime, an xattr outside user./trusted./security., a device number squashfs cannot encode, a
// path written twice) is reported as LayerImageUnsupported, and the caller unpacks the layer as
// before, so a build on it sees the same files either way.
//
// Layers strata builds itself stay directories (they are an upper dir already).
import { constants as fsc, accessSync, existsSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { Readable } from 'node:stream';
import { END_OF_ARCHIVE, encodeHeader, padding, type TarHeader } from './tar-format.js';
import { readTar, type TarEntry } from './tar-reader.js';
import { OPAQUE_XATTR, OverlayRewriter } from './overlay-rewrite.js';
import { ProcessError, coalesce, decompressed, hashing, sha256 } from './streams.js';
import { feedProcess, layerError, type ExtractResult } from './extract.js';

/** The image cannot hold this layer exactly, or tar2sqfs failed: unpack it instead. */
export class LayerImageUnsupported extends Error {}

/** lz4: the fastest compressor tar2sqfs has, and what reads fastest back. */
const TAR2SQFS_ARGS = ['--quiet', '--no-skip', '--compressor', 'lz4'];

let support: { tar2sqfs: string } | null | undefined;

/** One line on stderr with STRATA_DEBUG set; nothing otherwise. */
export function debugLine(msg: string): void {
  if (process.env.STRATA_DEBUG) process.stderr.write(`debug: ${msg}\n`);
}

function onPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try {
      accessSync(p, fsc.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Whether imported layers can become images here: tar2sqfs on PATH, running as root, a loop
 * device control node and squashfs in the kernel. Asked once per process (a handful of stats, no
 * spawns); a mount that fails later turns images off for the rest of the process
 * (disableLayerImages). STRATA_LAYER_IMAGES=0 turns them off.
 */
export function layerImageSupport(): { tar2sqfs: string } | undefined {
  if (support === undefined) {
    const why = probe();
    if (typeof why === 'string') {
      support = null;
      debugLine(`imported layers are unpacked into directories: ${why}`);
    } else support = why;
  }
  return support ?? undefined;
}

function probe(): { tar2sqfs: string } | string {
  if (process.env.STRATA_LAYER_IMAGES === '0') return 'STRATA_LAYER_IMAGES=0';
  if (process.getuid?.() !== 0) return 'not running as root (loop mounts need it)';
  const tar2sqfs = onPath('tar2sqfs');
  if (!tar2sqfs) return 'tar2sqfs (Debian package squashfs-tools-ng) is not on PATH';
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control';
  let fss = '';
  try {
    fss = readFileSync('/proc/filesystems', 'utf8');
  } catch {
    return 'cannot read /proc/filesystems';
  }
  // A squashfs module not loaded yet is not listed; mount(8) would load it, but a kernel with
  // neither is the common case for a missing line.
  if (!/\tsquashfs$/m.test(fss) && !existsSync(`/lib/modules/${release()}/kernel/fs/squashfs`)) return 'the kernel has no squashfs';
  return { tar2sqfs };
}

function release(): string {
  try {
    return readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    return '';
  }
}

export function disableLayerImages(reason: string): void {
  if (support === null) return;
  support = null;
  debugLine(`imported layers are unpacked into directories from now on: ${reason}`);
}

/** For tests: forget the probe's answer. */
export function resetLayerImageSupport(): void {
  support = undefined;
}

const XATTR_PREFIXES = ['user.', 'trusted.', 'security.'];
const MAX_MTIME = 2 ** 32;

/** Throws LayerImageUnsupported when squashfs would store `h` differently from the unpacker. */
function representable(h: TarHeader): void {
  const unsupported = (what: string) => new LayerImageUnsupported(`${JSON.stringify(h.name)}: ${what}`);
  if (!Number.isInteger(h.mtime) || h.mtime < 0 || h.mtime >= MAX_MTIME) throw unsupported(`mtime ${h.mtime} is not whole seconds in 1970..2106`);
  for (const k of h.xattrs.keys()) if (!XATTR_PREFIXES.some((p) => k.startsWith(p))) throw unsupported(`xattr ${k}`);
  if ((h.type === 'char' || h.type === 'block') && (h.devmajor >= 4096 || h.devminor >= 1 << 20)) throw unsupported(`device ${h.devmajor}:${h.devminor}`);
}

function isWhiteout(h: TarHeader): boolean {
  return h.type === 'char' && h.devmajor === 0 && h.devminor === 0;
}

/**
 * The layer in overlay form as tar2sqfs reads it. tar2sqfs refuses a path given twice, except a
 * directory it created implicitly for an earlier child, and sets a node's xattrs when the node's
 * entry is read; but whether a directory is opaque may be known only later in the layer (a
 * `.wh..wh..opq` marker after the directory's entry). So directories and whiteouts are written
 * at the end, in their final form; everything else as it comes.
 */
async function* imageTar(entries: AsyncIterable<TarEntry>, rewriter: OverlayRewriter): AsyncGenerator<Buffer> {
  const written = new Set<string>();
  const dirs = new Map<string, TarHeader>();
  const whiteouts = new Map<string, TarHeader>();
  const twice = (name: string) => new LayerImageUnsupported(`${JSON.stringify(name)} is written twice in the layer`);
  for await (const entry of entries) {
    for (const h of rewriter.plan(entry.header)) {
      representable(h);
      if (written.has(h.name)) throw twice(h.name);
      if (h.type === 'dir') {
        dirs.set(h.name, h);
        continue;
      }
      // A directory this layer replaces with a non-directory: its children are in the image already.
      if (dirs.has(h.name)) throw twice(h.name);
      if (isWhiteout(h)) {
        whiteouts.set(h.name, h);
        continue;
      }
      whiteouts.delete(h.name);
      written.add(h.name);
      yield encodeHeader(h);
      if (h.type === 'file' && h.size > 0) {
        for await (const chunk of entry.body()) yield chunk;
        const pad = padding(h.size);
        if (pad) yield Buffer.alloc(pad);
      }
    }
  }
  for (const [name, h] of whiteouts) if (!dirs.has(name)) yield encodeHeader(h);
  const opaque = (h: TarHeader): TarHeader => (rewriter.opaque.has(h.name) ? { ...h, xattrs: new Map([...h.xattrs, [OPAQUE_XATTR, Buffer.from('y')]]) } : h);
  for (const name of [...dirs.keys()].sort()) yield encodeHeader(opaque(dirs.get(name)!));
  // An opaque root (`.wh..wh..opq` at the top) hides every layer below, as the unpacker's xattr on its directory does.
  if (rewriter.opaque.has('')) {
    yield encodeHeader({ name: '.', type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map([[OPAQUE_XATTR, Buffer.from('y')]]) });
  }
  yield END_OF_ARCHIVE;
}

/**
 * Reads a (possibly compressed) layer tar and writes it as a squashfs image at `imageFile` (a
 * new file). Errors in the layer itself are the unpacker's (BAD_LAYER, UNSAFE_LAYER, ...);
 * LayerImageUnsupported means the layer is fine but should be unpacked instead. On any error
 * nothing is left at `imageFile`.
 */
export async function writeLayerImage(input: NodeJS.ReadableStream | Readable, imageFile: string, opts: { label: string; tar2sqfs: string }): Promise<ExtractResult> {
  const hash = sha256();
  const counter = { bytes: 0 };
  const rewriter = new OverlayRewriter(opts.label);
  try {
    const entries = readTar(hashing(decompressed(input as AsyncIterable<Buffer | string>), hash, counter));
    await feedProcess(coalesce(imageTar(entries, rewriter)), opts.tar2sqfs, [...TAR2SQFS_ARGS, imageFile]);
    return { diffId: `sha256:${hash.digest('hex')}`, size: counter.bytes };
  } catch (e) {
    await rm(imageFile, { force: true });
    if (e instanceof ProcessError && e.command === opts.tar2sqfs) throw new LayerImageUnsupported(e.message);
    if (e instanceof LayerImageUnsupported) throw e;
    throw layerError(e, opts.label);
  }
}

