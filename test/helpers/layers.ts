// Test helper: build image layers and small images from a list of entries, with strata's own code
// (tar-stream + src/image), never docker.
//
//   const layer = await writeLayer(blobDir, [
//     { name: 'etc/', type: 'directory' },
//     { name: 'etc/motd', content: 'hi\n' },
//     { name: 'bin/sh', type: 'symlink', linkname: '/bin/busybox' },
//   ]);                                  // -> { digest, diffId, size, path, descriptor } (gzip)
//   const image = await writeImageLayout(layoutDir, blobDir, { layers: [layer], config: { Cmd: ['sh'] }, tag: 'latest' });
//   const image2 = assembleImage(blobDir, { layers: [layer], architecture: 'arm64' });   // exporter input only
//
// Entries are written in the order given, owner 0:0 and mtime 2024-01-01 unless set, so the same
// input always gives the same digests. `blobDir` is a flat directory of blobs named by hex digest.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { buildConfigBlob, buildManifest } from '../../src/image/builders.js';
import type { BlobSource, ExportImage } from '../../src/image/image-data.js';
import { writeOciLayout } from '../../src/image/oci-layout.js';
import { MediaTypes, type ContainerConfig, type Descriptor, type HistoryEntry, type ImageConfig } from '../../src/image/types.js';

export const FIXED_TIME = new Date('2024-01-01T00:00:00Z');

export interface LayerEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device';
  mode?: number;
  uid?: number;
  gid?: number;
  content?: string | Buffer;
  /** A file on disk to stream as the content (for big files like /bin/busybox). */
  sourceFile?: string;
  size?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  mtime?: Date;
}

export interface BuiltLayer {
  path: string;
  digest: string;
  diffId: string;
  size: number;
  descriptor: Descriptor;
}

/** Passes bytes through, hashing (sha256) and counting them. */
export class HashTap extends Transform {
  readonly hash = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
}

/** A flat directory of blobs named by hex digest. */
export function dirBlobSource(dir: string): BlobSource {
  return { path: (d: string) => join(dir, d.replace(/^sha256:/, '')) };
}

/** Writes a gzip layer of `entries` into `blobDir/<hex>`. */
export async function writeLayer(blobDir: string, entries: readonly LayerEntry[]): Promise<BuiltLayer> {
  await mkdir(blobDir, { recursive: true });
  const tmp = join(blobDir, `layer-${process.pid}-${Math.random().toString(16).slice(2)}.tmp`);
  const pack = tar.pack();
  const uncompressed = new HashTap();
  const compressed = new HashTap();
  const done = pipeline(pack, uncompressed, createGzip({ level: 6 }), compressed, createWriteStream(tmp));
  for (const e of entries) {
    const type = e.type ?? 'file';
    const base = {
      name: e.name, type, uid: e.uid ?? 0, gid: e.gid ?? 0, mtime: e.mtime ?? FIXED_TIME,
      mode: e.mode ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
    };
    if (type === 'symlink' || type === 'link') {
      await new Promise<void>((res, rej) => pack.entry({ ...base, linkname: e.linkname ?? '' }, (err) => (err ? rej(err) : res())));
    } else if (type === 'character-device') {
      await new Promise<void>((res, rej) => pack.entry({ ...base, devmajor: e.devmajor ?? 0, devminor: e.devminor ?? 0 }, (err) => (err ? rej(err) : res())));
    } else if (type === 'directory') {
      await new Promise<void>((res, rej) => pack.entry(base, (err) => (err ? rej(err) : res())));
    } else if (e.sourceFile) {
      if (e.size === undefined) throw new Error(`layer entry ${e.name}: sourceFile needs size`);
      let finished!: Promise<void>;
      const sink = await new Promise<NodeJS.WritableStream>((resolve) => {
        finished = new Promise<void>((res, rej) => resolve(pack.entry({ ...base, size: e.size }, (err) => (err ? rej(err) : res()))));
      });
      await Promise.all([pipeline(createReadStream(e.sourceFile), sink), finished]);
    } else {
      const data = Buffer.from(e.content ?? '');
      await new Promise<void>((res, rej) => pack.entry({ ...base, size: data.length }, data, (err) => (err ? rej(err) : res())));
    }
  }
  pack.finalize();
  await done;
  const hex = compressed.hash.digest('hex');
  const digest = `sha256:${hex}`;
  const path = join(blobDir, hex);
  await rename(tmp, path).catch(async (err) => {
    await rm(tmp, { force: true });
    throw err;
  });
  const diffId = `sha256:${uncompressed.hash.digest('hex')}`;
  return { path, digest, diffId, size: compressed.size, descriptor: { mediaType: MediaTypes.ociLayerGzip, digest, size: compressed.size } };
}

export interface TestImageSpec {
  layers: BuiltLayer[];
  config?: ContainerConfig;
  architecture?: string;
  os?: string;
  variant?: string;
  history?: HistoryEntry[];
  created?: string;
}

/** Assembles config + manifest for layers already in `blobDir`; returns exporter input. */
export function assembleImage(blobDir: string, spec: TestImageSpec): ExportImage & { imageConfig: ImageConfig } {
  const imageConfig: ImageConfig = {
    architecture: spec.architecture ?? 'amd64',
    os: spec.os ?? 'linux',
    created: spec.created ?? FIXED_TIME.toISOString(),
    config: spec.config ?? {},
    rootfs: { type: 'layers', diff_ids: spec.layers.map((l) => l.diffId) },
    history: spec.history ?? spec.layers.map(() => ({ created: FIXED_TIME.toISOString(), created_by: 'strata test layer' })),
  };
  if (spec.variant) imageConfig.variant = spec.variant;
  const config = buildConfigBlob(imageConfig);
  const manifest = buildManifest(config.descriptor, spec.layers.map((l) => l.descriptor));
  return {
    imageConfig,
    blobs: dirBlobSource(blobDir),
    manifest: manifest.bytes,
    manifestDigest: manifest.digest,
    config: config.bytes,
    configDigest: config.digest,
    layers: spec.layers.map((l) => l.descriptor),
  };
}

/** Writes a one-image OCI layout at `dir` tagged `tag`. */
export async function writeImageLayout(dir: string, blobDir: string, spec: TestImageSpec & { tag?: string }): Promise<ExportImage> {
  const image = assembleImage(blobDir, spec);
  await writeOciLayout(dir, image, { refName: spec.tag ?? 'latest' });
  return image;
}
