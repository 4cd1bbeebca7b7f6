// Turning a finished step's overlay upper into a layer: an OCI blob in the content store and the
// upper itself (already in overlay format) as the layer's unpacked directory.
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Store, LayerInfo } from '../cache/store.js';
import { diffToLayer } from '../snapshot/diff.js';

export interface CommitOptions {
  compression: 'gzip' | 'zstd';
  sourceDateEpoch?: number;
  /** In-container paths the runtime may have created as empty mount points. */
  mountpoints: string[];
}

/** Returns the new layer, or undefined when the step changed nothing. The upper is consumed. */
export async function commitUpper(store: Store, upper: string, lowers: string[], opts: CommitOptions): Promise<LayerInfo | undefined> {
  const stubs = [...new Set(['/proc', '/dev', '/sys', ...opts.mountpoints])];
  const blobTmp = store.tmpPath('layer');
  const r = await diffToLayer(upper, {
    lowers,
    out: blobTmp,
    compression: opts.compression,
    sourceDateEpoch: opts.sourceDateEpoch,
    dropEmptyMountpoints: stubs,
  });
  if (r.empty) {
    await rm(blobTmp, { force: true });
    await rm(upper, { recursive: true, force: true });
    return undefined;
  }
  dropStubs(upper, lowers, stubs);
  const info: LayerInfo = { diffId: r.diffId, digest: r.digest, size: r.size, mediaType: r.mediaType };
  await store.adoptBlob(blobTmp, r.digest, r.mediaType);
  await store.adoptLayer(upper, info);
  return info;
}

/** Keeps the unpacked layer equal to its tar: removes the empty mount-point dirs the diff dropped. */
function dropStubs(upper: string, lowers: string[], stubs: string[]): void {
  for (const s of stubs.sort((a, b) => b.length - a.length)) {
    let p = s;
    while (p !== '/' && p !== '') {
      const host = join(upper, p);
      if (!existsSync(host) || lowers.some((l) => existsSync(join(l, p)))) break;
      try {
        if (readdirSync(host).length > 0) break;
        rmdirSync(host);
      } catch {
        break;
      }
      p = p.slice(0, p.lastIndexOf('/'));
    }
  }
}
