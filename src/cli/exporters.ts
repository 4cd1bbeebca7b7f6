// Build outputs that write an image somewhere: strata's store (`type=image`), an OCI layout or
// archive, a docker archive, or a registry.
import { resolve } from 'node:path';
import { StrataError } from '../errors.js';
import type { Store } from '../cache/store.js';
import type { BuiltImage } from '../solver/final-image.js';
import type { ExportImage } from '../image/image-data.js';
import type { RegistryClient } from '../registry/client.js';
import { parseReference, formatReference, familiarReference } from '../registry/reference.js';
import type { OutputSpec } from './build-options.js';

export function storeImage(store: Store, image: Omit<BuiltImage, 'layers'> & { layers: ExportImage['layers'] }): ExportImage {
  return { ...image, blobs: { path: (d: string) => store.blobPath(d) } };
}

/** The name an image is kept under in the store: the normalised reference (`localhost:5000/app:1`, `docker.io/library/app:latest`). */
export function storeName(name: string): string {
  return formatReference(parseReference(name));
}

export async function exportImage(o: Exclude<OutputSpec, { type: 'local' }>, built: BuiltImage, store: Store, client: RegistryClient, tags: string[]): Promise<void> {
  const image = storeImage(store, built);
  const names = ('names' in o && o.names?.length ? o.names : tags).map((t) => t.trim()).filter(Boolean);
  const keep = () => {
    for (const n of names) {
      store.setImage(storeName(n), built.manifestDigest, built.configDigest);
      store.setImage(familiarReference(parseReference(n)), built.manifestDigest, built.configDigest);
    }
  };
  switch (o.type) {
    case 'image':
      keep();
      if (o.push) await push(client, image, names);
      return;
    // The writers load only for the output that needs them (most builds just keep the image).
    case 'oci': {
      const { writeOciArchive } = await import('../image/oci-archive.js');
      const { writeOciLayout } = await import('../image/oci-layout.js');
      const refName = names[0] ? familiarReference(parseReference(names[0])) : undefined;
      if (o.tar) await writeOciArchive(resolve(o.dest), image, { refName, imageName: names[0] && storeName(names[0]) });
      else await writeOciLayout(resolve(o.dest), image, { refName: names[0] ? (parseReference(names[0]).tag ?? 'latest') : 'latest', imageName: names[0] && storeName(names[0]) });
      return;
    }
    case 'docker': {
      const { writeDockerArchive } = await import('../image/docker-archive.js');
      await writeDockerArchive(resolve(o.dest), image, { tags: names });
      return;
    }
    case 'registry':
      // BuildKit's type=registry is type=image,push=true: the image stays in the store too.
      await push(client, image, names);
      keep();
      return;
  }
}

async function push(client: RegistryClient, image: ExportImage, names: string[]): Promise<void> {
  if (names.length === 0) {
    throw new StrataError('PUSH_FAILED', 'nothing to push: the build has no name', { hint: 'add -t REGISTRY/REPO:TAG' });
  }
  const { pushImage } = await import('../image/push.js');
  await pushImage(client, image, names.map(parseReference));
}
