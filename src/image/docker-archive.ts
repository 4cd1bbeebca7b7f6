// `docker save` format: manifest.json ([{Config, RepoTags, Layers}]), the config JSON and one tar per
// layer, accepted by `docker load` and `podman load`. Layers stay as stored (gzip included, which
// both loaders decompress) unless `uncompressed` asks for plain tars, as old loaders expect.
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { StrataError } from '../errors.js';
import { digestHex } from '../registry/digest.js';
import { familiarReference, parseReference } from '../registry/reference.js';
import { checkImage, imageCreated, type ExportImage } from './image-data.js';
import { createTarWriter } from './tar-writer.js';
import { layerCompression, parseImageConfig } from './types.js';

export interface DockerArchiveOptions {
  /** Names the loaded image gets, e.g. `app:1`, `localhost/app:dev`, `registry:5000/x/y:tag`. */
  tags: string[];
  /** Write gzip layers decompressed (`<diffid>.tar`); needs one extra read of each layer to size it. */
  uncompressed?: boolean;
}

/** RepoTags entries in Docker's familiar form; digests cannot be tags. */
export function dockerArchiveTag(tag: string): string {
  const ref = parseReference(tag);
  if (ref.digest !== undefined && tag.includes('@')) {
    throw new StrataError('INVALID_REFERENCE', `"${tag}" names a digest; a docker archive can only record tags`, {
      hint: 'give a name with a tag, like app:1',
    });
  }
  return familiarReference(ref);
}

async function gunzippedSize(path: string): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(path).pipe(createGunzip())) n += (chunk as Buffer).length;
  return n;
}

export async function writeDockerArchive(file: string, image: ExportImage, opts: DockerArchiveOptions): Promise<void> {
  await checkImage(image);
  const repoTags = [...new Set(opts.tags.map(dockerArchiveTag))];
  const config = parseImageConfig(image.config);
  if (config.rootfs.diff_ids.length !== image.layers.length) {
    throw new StrataError('INVALID_IMAGE', `image config lists ${config.rootfs.diff_ids.length} diff_ids but the manifest has ${image.layers.length} layers`, {
      hint: 'docker load would refuse this image; it was assembled wrongly',
    });
  }
  const configName = `${digestHex(image.configDigest)}.json`;
  const tw = createTarWriter(file, imageCreated(image));
  try {
    await tw.addBuffer(configName, image.config);
    const layerNames: string[] = [];
    const written = new Set<string>();
    for (const [i, layer] of image.layers.entries()) {
      const compression = layerCompression(layer.mediaType);
      const path = image.blobs.path(layer.digest);
      if (opts.uncompressed && compression === 'gzip') {
        const name = `${digestHex(config.rootfs.diff_ids[i]!)}.tar`;
        layerNames.push(name);
        if (written.has(name)) continue;
        written.add(name);
        await tw.addStream(name, createReadStream(path).pipe(createGunzip()), await gunzippedSize(path));
      } else {
        const ext = compression === 'gzip' ? '.tar.gz' : compression === 'zstd' ? '.tar.zst' : '.tar';
        const name = `${digestHex(layer.digest)}${ext}`;
        layerNames.push(name);
        if (written.has(name)) continue;
        written.add(name);
        await tw.addFile(name, path, layer.size);
      }
    }
    const manifest = [{ Config: configName, RepoTags: repoTags, Layers: layerNames }];
    await tw.addBuffer('manifest.json', Buffer.from(JSON.stringify(manifest)));
    await tw.finish();
  } catch (e) {
    await tw.abort();
    if (e instanceof StrataError) throw e;
    throw new StrataError('EXPORT_FAILED', `writing docker archive ${file} failed: ${(e as Error).message}`, {
      hint: 'check free space and permissions of the destination', cause: e,
    });
  }
}
