// A tar of an OCI layout (what `skopeo copy ... oci-archive:` and `podman load` read), streamed
// straight from the blob store without writing the layout to disk first.
import { StrataError } from '../errors.js';
import { digestAlgorithm, digestHex } from '../registry/digest.js';
import { MediaTypes, type Descriptor, type Index } from '../registry/media-types.js';
import { imageCreated, isExportIndex, planExport, type ExportTarget } from './image-data.js';
import { OCI_LAYOUT_FILE } from './oci-layout.js';
import { createTarWriter } from './tar-writer.js';
import { Annotations } from './types.js';

export interface OciArchiveOptions {
  /**
   * `org.opencontainers.image.ref.name` of the image. podman load names the image after it, so
   * give a full name (`localhost/app:1`) for podman, a bare tag (`latest`) for `oci-archive:F:TAG`.
   */
  refName?: string;
  /** `io.containerd.image.name` (containerd's `ctr import` uses it). */
  imageName?: string;
}

function blobName(digest: string): string {
  return `blobs/${digestAlgorithm(digest)}/${digestHex(digest)}`;
}

export async function writeOciArchive(file: string, image: ExportTarget, opts: OciArchiveOptions = {}): Promise<void> {
  const plan = await planExport(image);
  const annotations: Record<string, string> = {};
  if (opts.imageName) annotations[Annotations.containerdImageName] = opts.imageName;
  if (opts.refName) annotations[Annotations.refName] = opts.refName;
  const desc: Descriptor = { ...plan.top };
  if (Object.keys(annotations).length) desc.annotations = annotations;
  const index: Index = { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [desc] };

  const tw = createTarWriter(file, imageCreated(isExportIndex(image) ? (image.images[0] ?? { config: Buffer.from('{}') }) : image));
  try {
    await tw.addBuffer('oci-layout', Buffer.from(OCI_LAYOUT_FILE));
    await tw.addBuffer('index.json', Buffer.from(JSON.stringify(index)));
    await tw.addDirectory('blobs');
    const algos = new Set(plan.blobs.map((b) => digestAlgorithm(b.digest)));
    for (const a of [...algos].sort()) await tw.addDirectory(`blobs/${a}`);
    for (const blob of plan.blobs) {
      if (blob.file !== undefined) await tw.addFile(blobName(blob.digest), blob.file, blob.size);
      else await tw.addBuffer(blobName(blob.digest), blob.bytes!);
    }
    await tw.finish();
  } catch (e) {
    await tw.abort();
    if (e instanceof StrataError) throw e;
    throw new StrataError('EXPORT_FAILED', `writing OCI archive ${file} failed: ${(e as Error).message}`, {
      hint: 'check free space and permissions of the destination', cause: e,
    });
  }
}
