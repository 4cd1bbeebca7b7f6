// Pushing an image to one or more references: blobs first (skipped when present, mounted from the
// first repository when several share a registry), then the manifest under every tag.
import { Readable } from 'node:stream';
import { StrataError } from '../errors.js';
import type { RegistryClient } from '../registry/client.js';
import { formatReference, type ImageReference } from '../registry/reference.js';
import { checkImage, type ExportImage } from './image-data.js';
import { declaredMediaType } from './types.js';

export interface PushResult {
  digest: string;
  /** Every reference pushed, with the digest it now points at. */
  pushed: string[];
}

async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(workers);
}

export async function pushImage(client: RegistryClient, image: ExportImage, refs: readonly ImageReference[]): Promise<PushResult> {
  if (refs.length === 0) throw new StrataError('PUSH_FAILED', 'no reference to push to', { hint: 'give at least one name, like registry:5000/app:tag' });
  await checkImage(image);
  const mediaType = declaredMediaType(image.manifest);
  const repos = new Map<string, ImageReference>();
  for (const r of refs) repos.set(`${r.registry}/${r.repository}`, { registry: r.registry, repository: r.repository });

  const pushedTo: ImageReference[] = [];
  for (const repo of repos.values()) {
    const mountFrom = pushedTo.find((p) => p.registry === repo.registry);
    const seen = new Set<string>();
    const layers = image.layers.filter((l) => (seen.has(l.digest) ? false : (seen.add(l.digest), true)));
    await inParallel(layers, 3, async (l) => {
      await client.pushBlob(repo, l.digest, l.size, image.blobs.path(l.digest), mountFrom ? { mountFrom } : {});
    });
    if (!seen.has(image.configDigest)) {
      await client.pushBlob(repo, image.configDigest, image.config.length, () => bufferStream(image.config), mountFrom ? { mountFrom } : {});
    }
    pushedTo.push(repo);
  }

  const pushed: string[] = [];
  for (const ref of refs) {
    if (ref.digest && ref.digest !== image.manifestDigest) {
      throw new StrataError('PUSH_FAILED', `cannot push ${formatReference(ref)}: the image's digest is ${image.manifestDigest}`, {
        hint: 'push to a tag, or drop the @digest part of the name',
      });
    }
    const digest = await client.putManifest(ref, ref.tag ?? image.manifestDigest, image.manifest, mediaType);
    if (digest !== image.manifestDigest) {
      throw new StrataError('DIGEST_MISMATCH', `registry ${ref.registry} recorded ${formatReference(ref)} as ${digest}, expected ${image.manifestDigest}`, {
        hint: 'the registry rewrote the manifest',
      });
    }
    pushed.push(formatReference({ ...ref, digest }));
  }
  return { digest: image.manifestDigest, pushed };
}

function bufferStream(buf: Buffer): Readable {
  return Readable.from([buf]);
}
