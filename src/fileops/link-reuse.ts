// A COPY from the build context that runs again after a small change: most of its files are the
// same as in the previous result of the same step, whose unpacked layer is on disk. Creating a file
// costs an inode allocation (tens to hundreds of µs on a busy ext4, far more right after a big
// delete); a hard link to the old layer's file costs a directory entry. So unchanged files are
// linked instead of copied, once the step's overlay is unmounted (links go straight into the upper
// dir; while mounted, writing there behind overlayfs's back would be undefined).
//
// (A previous layer kept as a filesystem image, not a directory, lends nothing: links cannot cross
// filesystems, and all files are copied.)
//
// Why this is safe: unpacked layers are never written once adopted (they are read-only lowers, and
// overlayfs copies a file up before changing it), so an inode shared by two layers cannot change
// under either; deleting a layer dir only drops its own links. A linked file is used only when it
// is exactly what the copy would have made: same content (the step's checksum says the source file
// is unchanged since that layer was made), size, mode, owner, mtime (to the microsecond futimes
// keeps), no xattrs
// on either directory, and no other file of this copy linked to the same inode (which would turn two files into a hard
// link pair in the layer tar). Anything else is copied as usual. What differs from a copy is only
// what no layer records: atime, ctime, inode number and link count (`du` of each layer dir counts
// shared files in full).
import { closeSync, fstatSync, futimesSync, linkSync, lstatSync, lutimesSync, openSync, rmSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { listAttributesSync } from 'fs-xattr';
import { isOverlayXattr } from '../snapshot/overlay-rewrite.js';
import { runFileJobs } from './copy-workers.js';
import type { FileJob } from './file-jobs.js';

export interface CopyReuse {
  /** Unpacked layer dir of an earlier result of the same COPY on the same parent; never written to. */
  layerDir: string;
  /** Whether the context file at this path (as the step's checksum names it) has the content it had then. */
  unchanged(path: string): boolean;
}

/** A file the copy left out for now: `rel` is its path below the root of the step's filesystem. */
export interface DeferredFile {
  job: FileJob;
  rel: string;
}

export interface LinkStats {
  linked: number;
  copied: number;
  /**
   * The linked files as inode -> path below the upper, the path as a binary string (one char per
   * byte, as the layer diff names entries): lets the diff copy their tar entries from the earlier
   * layer's tar (snapshot/tar-splice.ts).
   */
  inodes: Map<number, string>;
  /** Source paths of the linked files: files this copy never read. */
  sources: Set<string>;
}

const ASCII = /^[\x00-\x7f]*$/;

const SELF = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const S_ISGID = 0o2000;
/** Give up on checking once this many candidates in a row could not be linked (e.g. all touched). */
const GIVE_UP_AFTER = 64;
/** futimes results compared with the predicted ones before the prediction is trusted. */
const PROBES = 8;

/**
 * The mtimeMs lstat reports after fs.futimesSync(fd, atime, seconds): libuv turns the double into
 * a timespec (uv__fs_to_timespec: truncated to whole seconds, then to microseconds) and Node turns
 * that into milliseconds as sec * 1e3 + nsec / 1e6. Checked against real futimes calls on a scratch
 * file before use (MtimeCheck), so a different conversion only turns linking off. Doubles tell
 * mtimes apart to about 0.25 µs at today's dates; the files compared were made by this same
 * conversion (whole microseconds) or from a layer tar (whole seconds). (BigInt stats and arithmetic
 * cost more than the link itself.)
 */
function predictedMtimeMs(seconds: number): number {
  let sec = Math.trunc(seconds);
  let nsec = Math.trunc((seconds - sec) * 1e9);
  nsec -= nsec % 1000;
  if (nsec < 0) {
    nsec += 1e9;
    sec -= 1;
  }
  return sec * 1e3 + nsec / 1e6;
}

/** The mtime a copy would give a file, as ns: predicted, with the first few predictions verified. */
class MtimeCheck {
  private probes = 0;
  private trusted = true;
  constructor(private readonly scratch: string) {}

  expected(job: FileJob): number | undefined {
    if (!this.trusted) return undefined;
    const predicted = predictedMtimeMs(job.mtime);
    if (this.probes >= PROBES) return predicted;
    this.probes++;
    let real: number;
    const fd = openSync(this.scratch, 'w');
    try {
      futimesSync(fd, job.atime, job.mtime);
      real = fstatSync(fd).mtimeMs;
    } finally {
      closeSync(fd);
    }
    if (real !== predicted) this.trusted = false;
    return this.trusted ? predicted : undefined;
  }

  dispose(): void {
    rmSync(this.scratch, { force: true });
  }
}

/** Whether a directory has xattrs other than overlayfs's own (which new files never inherit). */
function hasXattrs(p: string): boolean {
  try {
    return listAttributesSync(p).some((name) => !isOverlayXattr(name));
  } catch {
    return true;
  }
}

/**
 * Links or copies the deferred files into `upper` (the unmounted upper of the step), then puts back
 * the times of the directories that received them (a new entry moves a directory's mtime).
 * `dirTimes` holds, per directory (same relative paths), the [atime, mtime] the copy gave it.
 */
export async function finishDeferred(reuse: CopyReuse, upper: string, files: DeferredFile[], dirTimes: Map<string, [number, number]>): Promise<LinkStats> {
  const check = new MtimeCheck(join(dirname(upper), `.mtime-probe-${process.pid}`));
  const usedInodes = new Map<number, string>();
  const sources = new Set<string>();
  // Per directory: the gid a file created in the new one gets, or null to link nothing there: when
  // either side has xattrs (a default ACL gives new files one; a layer made elsewhere may carry
  // labels). Checked per directory, not per file: files of a context copy get xattrs only from
  // their directory.
  const parentGid = new Map<string, number | null>();
  const gidIn = (dirRel: string): number | null => {
    let g = parentGid.get(dirRel);
    if (g === undefined) {
      const host = dirRel === '' ? upper : `${upper}/${dirRel}`;
      const donorDir = dirRel === '' ? reuse.layerDir : `${reuse.layerDir}/${dirRel}`;
      const st = lstatSync(host);
      g = hasXattrs(host) || hasXattrs(donorDir) ? null : st.mode & S_ISGID ? st.gid : SELF.gid;
      parentGid.set(dirRel, g);
    }
    return g;
  };
  const fallback: FileJob[] = [];
  let misses = 0;
  let linked = 0;
  // A layer kept as a filesystem image (an imported one) has no directory here, and its mount is
  // another filesystem (link(2) fails with EXDEV): nothing to link from.
  let linking = lstatSync(reuse.layerDir, { throwIfNoEntry: false })?.dev === lstatSync(upper).dev;
  try {
    for (const f of files) {
      const target = `${upper}/${f.rel}`;
      if (linking && misses < GIVE_UP_AFTER) {
        const slash = f.rel.lastIndexOf('/');
        const gid = gidIn(slash < 0 ? '' : f.rel.slice(0, slash));
        const donor = `${reuse.layerDir}/${f.rel}`;
        const st: Stats | undefined = gid === null ? undefined : lstatSync(donor, { throwIfNoEntry: false });
        const owner = f.job.owner ?? { uid: SELF.uid, gid: gid ?? SELF.gid };
        if (
          st &&
          st.isFile() &&
          st.size === f.job.size &&
          (st.mode & 0o7777) === f.job.mode &&
          st.uid === owner.uid &&
          st.gid === owner.gid &&
          !usedInodes.has(st.ino) &&
          st.mtimeMs === check.expected(f.job)
        ) {
          try {
            linkSync(donor, target);
            usedInodes.set(st.ino, ASCII.test(f.rel) ? f.rel : Buffer.from(f.rel, 'utf8').toString('latin1'));
            sources.add(f.job.src);
            linked++;
            misses = 0;
            continue;
          } catch (e) {
            // EXDEV (layers elsewhere) or EPERM: no links at all; EMLINK, ENOENT: just this file
            const code = (e as NodeJS.ErrnoException).code;
            if (code === 'EXDEV' || code === 'EPERM') linking = false;
          }
        }
        misses++;
      }
      fallback.push({ ...f.job, dst: target });
    }
  } finally {
    check.dispose();
  }
  await runFileJobs(fallback);
  for (const [rel, [atime, mtime]] of dirTimes) lutimesSync(rel === '' ? upper : `${upper}/${rel}`, atime, mtime);
  return { linked, copied: fallback.length, inodes: usedInodes, sources };
}
