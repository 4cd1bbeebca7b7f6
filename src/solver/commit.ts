// Turning a finished step's overlay upper into a layer: an OCI blob in the content store and the
// upper itself (already in overlay format) as the layer's unpacked directory.
import { existsSync, lstatSync, readdirSync, rmdirSync, type BigIntStats } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import posix from 'node:path/posix';
import { hostPath, lookupInLowers, readXattrs } from '../snapshot/fs-walk.js';
import type { Store, LayerInfo } from '../cache/store.js';
import { diffToLayer } from '../snapshot/diff.js';
import type { SpliceSource } from '../snapshot/tar-splice.js';

export interface CommitOptions {
  compression: 'gzip' | 'zstd' | 'none';
  sourceDateEpoch?: number;
  /** In-container paths the runtime may have created as empty mount points. */
  mountpoints: string[];
  /** An older layer the upper hard-links files from; their tar entries are copied from its tar. */
  splice?: SpliceSource;
}

/** Returns the new layer, or undefined when the step changed nothing. The upper is consumed. */
export async function commitUpper(store: Store, upper: string, lowers: string[], opts: CommitOptions): Promise<LayerInfo | undefined> {
  const stubs = [...new Set(['/proc', '/dev', '/sys', ...opts.mountpoints])];
  dropCopiedUpParents(upper, lowers, stubs);
  const blobTmp = store.tmpPath('layer');
  const r = await diffToLayer(upper, {
    lowers,
    out: blobTmp,
    compression: opts.compression,
    sourceDateEpoch: opts.sourceDateEpoch,
    dropEmptyMountpoints: stubs,
    splice: opts.splice,
  });
  if (r.empty) {
    await rm(blobTmp, { force: true });
    await rm(upper, { recursive: true, force: true });
    return undefined;
  }
  dropStubs(upper, lowers, stubs);
  const info: LayerInfo = { diffId: r.diffId, digest: r.digest, size: r.size, mediaType: r.mediaType };
  await store.adoptBlob(blobTmp, r.digest, r.mediaType);
  await store.adoptLayer(upper, info, r.diskSize);
  return info;
}

/**
 * A file mount point such as /etc/resolv.conf makes the runtime copy its parent (/etc) up into the
 * upper; the executor removes the stub and restores the parent's times, but the empty copy stays
 * and would become a layer entry (and `RUN true` a layer). An empty, non-opaque copy whose mode,
 * owner, mtime and xattrs equal the directory below is no change: remove it before the diff.
 */
function dropCopiedUpParents(upper: string, lowers: string[], mountpoints: string[]): void {
  for (const m of mountpoints) {
    if (existsSync(join(upper, m))) continue;
    for (let p = posix.dirname(m); p !== '/' && p !== '.'; p = posix.dirname(p)) {
      const rel = p.slice(1);
      const host = hostPath(upper, rel);
      const st: BigIntStats | undefined = lstatSync(host, { bigint: true, throwIfNoEntry: false });
      // Gone already (a stub dir the executor removed): its parent may still be a bare copy-up.
      if (!st) continue;
      if (!st.isDirectory() || readdirSync(host).length > 0) break;
      const mine = readXattrs(host);
      if (mine.opaque) break;
      const below = lookupInLowers(lowers, rel);
      if (!below || !below.st.isDirectory()) break;
      const bst = lstatSync(hostPath(below.layer, rel), { bigint: true });
      if (bst.mode !== st.mode || bst.uid !== st.uid || bst.gid !== st.gid || bst.mtimeNs !== st.mtimeNs) break;
      const theirs = readXattrs(hostPath(below.layer, rel)).xattrs;
      if (theirs.size !== mine.xattrs.size || [...theirs].some(([k, v]) => !mine.xattrs.get(k)?.equals(v))) break;
      rmdirSync(host);
    }
  }
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
