// Pushing an image (or a multi-platform index) to one or more references: blobs first (skipped when
// present, mounted from the first repository when several share a registry), then per-platform
// manifests by digest, then the top manifest or index under every tag.
import { Readable } from 'node:stream';
import { StrataError } from '../errors.js';
import type { RegistryClient } from '../registry/client.js';
import { formatReference, type ImageReference } from '../registry/reference.js';
import { BLOB_TRANSFERS, forEachLimit } from '../registry/parallel.js';
import { isExportIndex, planExport, type ExportTarget } from './image-data.js';
import { declaredMediaType } from './types.js';

export interface PushResult {
  /** Digest of what the tags point at (the manifest, or the index). */
  digest: string;
  /** Every reference pushed, as `registry/repo:tag@digest`. */
  pushed: string[];
}

function bufferStream(buf: Buffer): Readable {
  return Readable.from([buf]);
}

export async function pushImage(client: RegistryClient, image: ExportTarget, refs: readonly ImageReference[]): Promise<PushResult> {
  if (refs.length === 0) throw new StrataError('PUSH_FAILED', 'no reference to push to', { hint: 'give at least one name, like registry:5000/app:tag' });
  const plan = await planExport(image);
  const images = isExportIndex(image) ? image.images : [image];
  const manifestDigests = new Set(images.map((i) => i.manifestDigest));
  // Layers and configs are blobs; manifests (and the index) go through the manifest endpoint.
  const blobs = plan.blobs.filter((b) => !manifestDigests.has(b.digest) && b.digest !== plan.top.digest);

  const repos = new Map<string, ImageReference>();
  for (const r of refs) repos.set(`${r.registry}/${r.repository}`, { registry: r.registry, repository: r.repository });

  const done: ImageReference[] = [];
  for (const repo of repos.values()) {
    const mountFrom = done.find((p) => p.registry === repo.registry);
    await forEachLimit(blobs, BLOB_TRANSFERS, async (b) => {
      const source = b.file !== undefined ? b.file : () => bufferStream(b.bytes!);
      await client.pushBlob(repo, b.digest, b.size, source, mountFrom ? { mountFrom } : {});
    });
    if (isExportIndex(image)) {
      for (const img of images) await client.putManifest(repo, img.manifestDigest, img.manifest, declaredMediaType(img.manifest));
    }
    done.push(repo);
  }

  const top = isExportIndex(image) ? image.index : image.manifest;
  const pushed: string[] = [];
  for (const ref of refs) {
    if (ref.digest && ref.digest !== plan.top.digest) {
      throw new StrataError('PUSH_FAILED', `cannot push ${formatReference(ref)}: the image's digest is ${plan.top.digest}`, {
        hint: 'push to a tag, or drop the @digest part of the name',
      });
    }
    const digest = await client.putManifest(ref, ref.tag ?? plan.top.digest, top, plan.top.mediaType);
    pushed.push(formatReference({ ...ref, digest }));
  }
  return { digest: plan.top.digest, pushed };
}
