// A layer that arrives as a blob (an imported cache, a pulled base image) kept as one read-only
// filesystem image in the store (`layers/<hex>.erofs`, an uncompressed EROFS image) instead of
// being unpacked into files. Creating files is the slow part of unpacking on ext4 (55-290 µs per
// file, tens of thousands of files in a toolchain layer); writing one image file costs about what
// copying the contents does. The store mounts an image read-only while a process uses it as an
// overlay lower (Store.layerLower, layer-mount.ts): overlayfs takes whiteouts (0/0 character
// devices) and `trusted.overlay.opaque` from an EROFS lower as from any other, and copies files up
// from it as usual.
//
// The tar is parsed, checked and rewritten into overlay form by the same code as the unpacker
// (overlay-rewrite.ts), so both accept and refuse the same layers, and the image is written by
// strata itself (erofs-image.ts): no tool is needed, only a kernel with EROFS (Linux 5.4+; from
// 6.12 it mounts a file without a loop device). What the image cannot hold exactly (a sub-second
// mtime, an xattr outside user./trusted./security., a device number Linux cannot encode, a directory
// replaced by a file within the layer) is reported as LayerImageUnsupported, and the caller unpacks
// the layer as before, so a build on it sees the same files either way.
//
// Layers strata builds itself stay directories (they are an upper dir already).
import { existsSync, readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { readTar } from './tar-reader.js';
import { OPAQUE_XATTR, OverlayRewriter } from './overlay-rewrite.js';
import { decompressed, digesting } from './streams.js';
import { StreamDigest } from './stream-workers.js';
import { layerError, type ExtractResult } from './extract.js';
import { ErofsUnsupported, ErofsWriter } from './erofs-image.js';
import { debugLine } from '../debug.js';

/** The image cannot hold this layer exactly: unpack it instead. */
export class LayerImageUnsupported extends Error {}

let support: boolean | undefined;

/**
 * Whether layers from blobs can become images here: running as root (mounting needs it) and EROFS
 * in the kernel. Asked once per process (no spawns). Whether mounts are allowed (a container
 * without the right) shows only when the first image is mounted: a failure there turns images off
 * for the rest of the process (disableLayerImages). STRATA_LAYER_IMAGES=0 turns them off.
 */
export function layerImageSupport(): boolean {
  if (support === undefined) {
    const why = probe();
    support = why === undefined;
    if (why) debugLine(`layers from blobs are unpacked into directories: ${why}`);
  }
  return support;
}

function probe(): string | undefined {
  if (process.env.STRATA_LAYER_IMAGES === '0') return 'STRATA_LAYER_IMAGES=0';
  if (process.getuid?.() !== 0) return 'not running as root (mounting an image needs it)';
  let fss = '';
  try {
    fss = readFileSync('/proc/filesystems', 'utf8');
  } catch {
    return 'cannot read /proc/filesystems';
  }
  // A module not loaded yet is not listed; mount(8) would load it.
  if (!/\terofs$/m.test(fss) && !existsSync(`/lib/modules/${release()}/kernel/fs/erofs`)) return 'the kernel has no EROFS';
  return undefined;
}

function release(): string {
  try {
    return readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    return '';
  }
}

export function disableLayerImages(reason: string): void {
  if (support === false) return;
  support = false;
  debugLine(`layers from blobs are unpacked into directories from now on: ${reason}`);
}

/** For tests: forget the probe's answer. */
export function resetLayerImageSupport(): void {
  support = undefined;
}

/**
 * Reads a (possibly compressed) layer tar and writes it as an image at `imageFile` (a new file).
 * Errors in the layer itself are the unpacker's (BAD_LAYER, UNSAFE_LAYER, ...);
 * LayerImageUnsupported means the layer is fine but should be unpacked instead. On any error
 * nothing is left at `imageFile`.
 */
export async function writeLayerImage(input: NodeJS.ReadableStream | Readable, imageFile: string, opts: { label: string }): Promise<ExtractResult> {
  const hash = new StreamDigest();
  const rewriter = new OverlayRewriter(opts.label);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(imageFile, 'wx');
    const writer = new ErofsWriter(fh);
    for await (const entry of readTar(digesting(decompressed(input as AsyncIterable<Buffer | string>), hash))) {
      for (const h of rewriter.plan(entry.header)) {
        await writer.add(h, h.type === 'file' && h.size > 0 ? entry.body() : undefined);
      }
    }
    // Opacity is known only at the end (a `.wh..wh..opq` may come after the directory's entries).
    for (const dir of rewriter.opaque) writer.setDirXattr(dir, OPAQUE_XATTR, Buffer.from('y'));
    await writer.finish();
    await fh.close();
    fh = undefined;
    return { diffId: await hash.digest(), size: hash.bytes };
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await rm(imageFile, { force: true });
    if (e instanceof ErofsUnsupported) throw new LayerImageUnsupported(e.message);
    throw layerError(e, opts.label);
  }
}
