// `strata images`, `strata save`, `strata load`, `strata rmi`: moving built images in and out of
// the store without a registry (one CI job's image becomes another's base).
import type { Command } from 'commander';
import { mkdtemp, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StrataError } from '../../errors.js';
import { Store } from '../../cache/store.js';
import { imageFromManifest } from '../../image/image-data.js';
import { writeOciArchive } from '../../image/oci-archive.js';
import { writeDockerArchive } from '../../image/docker-archive.js';
import { readOciLayout } from '../../image/oci-layout.js';
import { familiarReference, parseReference } from '../../registry/reference.js';
import { storeName } from '../exporters.js';
import { run } from '../proc.js';

function openStore(root?: string): Store {
  return Store.open(root ? resolve(root) : undefined);
}

function findImage(store: Store, name: string) {
  const img = store.image(name) ?? store.image(storeName(name));
  if (!img) {
    throw new StrataError('NO_IMAGE', `image "${name}" is not in the store`, { hint: 'list images with `strata images`; build one with `strata build -t NAME .`' });
  }
  return img;
}

export function registerImages(program: Command): void {
  program
    .command('images')
    .description('List images kept in the store')
    .option('--root <dir>', 'store directory')
    .option('--format <fmt>', 'table or json', 'table')
    .action((o: { root?: string; format: string }) => {
      const store = openStore(o.root);
      try {
        const all = store.images().filter((i) => !i.name.startsWith('docker.io/') || !store.image(familiarReference(parseReference(i.name))));
        if (o.format === 'json') {
          process.stdout.write(JSON.stringify(all.map((i) => ({ name: i.name, digest: i.manifestDigest, config: i.configDigest, created: new Date(i.created).toISOString() })), null, 2) + '\n');
          return;
        }
        process.stdout.write('NAME'.padEnd(48) + 'DIGEST'.padEnd(21) + 'CREATED\n');
        for (const i of all) process.stdout.write(i.name.padEnd(48) + i.manifestDigest.slice(0, 19).padEnd(21) + new Date(i.created).toISOString() + '\n');
      } finally {
        store.close();
      }
    });

  program
    .command('save')
    .description('Write an image from the store to a tar (OCI archive, or docker archive with --format docker)')
    .argument('<name>', 'image name')
    .requiredOption('-o, --output <file>', 'tar file to write')
    .option('--format <fmt>', 'oci or docker', 'oci')
    .option('--root <dir>', 'store directory')
    .action(async (name: string, o: { output: string; format: string; root?: string }) => {
      const store = openStore(o.root);
      try {
        const rec = findImage(store, name);
        const image = await imageFromManifest({ path: (d) => store.blobPath(d) }, await store.readBlob(rec.manifestDigest));
        if (o.format === 'docker') await writeDockerArchive(resolve(o.output), image, { tags: [name] });
        else await writeOciArchive(resolve(o.output), image, { refName: familiarReference(parseReference(name)), imageName: storeName(name) });
      } finally {
        store.close();
      }
    });

  program
    .command('load')
    .description('Read an OCI archive (from `strata save` or `skopeo copy ... oci-archive:`) into the store')
    .requiredOption('-i, --input <file>', 'tar file to read')
    .option('-t, --tag <name>', 'name to keep it under (default: the name recorded in the archive)')
    .option('--root <dir>', 'store directory')
    .action(async (o: { input: string; tag?: string; root?: string }) => {
      const store = openStore(o.root);
      const dir = await mkdtemp(join(store.root, 'tmp', `load-${process.pid}-`));
      try {
        const r = await run('tar', ['-xf', resolve(o.input), '-C', dir]);
        if (r.code !== 0) throw new StrataError('BAD_ARCHIVE', `cannot read ${o.input}: ${r.stderr.trim()}`, { hint: 'pass a tar written by `strata save` or skopeo oci-archive' });
        const img = await readOciLayout(dir);
        for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
          await store.adoptBlobCopy(img.blobs.path(d), d);
        }
        await store.putBlob(img.manifest, img.mediaType);
        const name = o.tag ?? img.refName;
        if (!name) throw new StrataError('NO_NAME', `${o.input} records no image name`, { hint: 'give one with -t NAME' });
        store.setImage(storeName(name), img.manifestDigest, img.configDigest);
        store.setImage(familiarReference(parseReference(name)), img.manifestDigest, img.configDigest);
        process.stdout.write(`Loaded image: ${name} (${img.manifestDigest})\n`);
      } finally {
        await rm(dir, { recursive: true, force: true });
        store.close();
      }
    });

  program
    .command('rmi')
    .description('Remove image names from the store')
    .argument('<names...>')
    .option('--root <dir>', 'store directory')
    .action((names: string[], o: { root?: string }) => {
      const store = openStore(o.root);
      try {
        for (const n of names) {
          const names = new Set([n]);
          try {
            names.add(storeName(n));
            names.add(familiarReference(parseReference(n)));
          } catch {
            // Not a reference: only the literal name.
          }
          const removed = [...names].map((x) => store.removeImage(x)).some(Boolean);
          if (!removed) throw new StrataError('NO_IMAGE', `image "${n}" is not in the store`, { hint: 'list images with `strata images`' });
          process.stdout.write(`Untagged: ${n}\n`);
        }
      } finally {
        store.close();
      }
    });
}
