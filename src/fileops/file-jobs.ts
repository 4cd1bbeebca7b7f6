// The per-file system calls of a COPY, with nothing but node:fs (and open-noatime.ts), so the same
// code runs inline and on the copy worker threads (copy-workers.ts).
//
// Creating a file costs far more than its content here (ext4 inode allocation, attribute
// changes), so each file gets the fewest calls that leave it as the copy rules want: create with
// its mode (O_EXCL: nothing is written through a link planted at the target), write, set the owner
// if it is not ours, set the mode only if creation left another one (umask, a default ACL, chown
// clearing setuid/setgid: an fstat tells), then the times. fs.copyFile would add an fchmod, an
// ftruncate and two failing clone/copy_file_range attempts per file.
import { closeSync, constants, copyFileSync, chmodSync, fchmodSync, fchownSync, fstatSync, futimesSync, lchownSync, lutimesSync, openSync, readSync, symlinkSync, writeSync } from 'node:fs';
import { openNoAtime } from '../open-noatime.js';

/** A regular file to create at `dst` (which must not exist) with the content of `src`. */
export interface FileJob {
  kind: 'file';
  src: string;
  dst: string;
  size: number;
  /** Final permission bits, setuid/setgid/sticky included. */
  mode: number;
  /** Owner to set; absent when the creating process's own ids are already right. */
  owner?: { uid: number; gid: number };
  /** Seconds, as fs.utimes takes them. */
  atime: number;
  mtime: number;
}

export interface SymlinkJob {
  kind: 'symlink';
  target: string;
  dst: string;
  owner?: { uid: number; gid: number };
  atime: number;
  mtime: number;
}

export type FileOpJob = FileJob | SymlinkJob;

/** Above this a file goes through the kernel's own copy (no trip through a user buffer). */
const KERNEL_COPY_MIN = 1024 * 1024;
const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;

let buffer: Buffer | undefined;

function copyContent(job: FileJob): void {
  const src = openNoAtime(job.src);
  try {
    const dst = openSync(job.dst, CREATE, job.mode);
    try {
      buffer ??= Buffer.allocUnsafe(KERNEL_COPY_MIN);
      for (;;) {
        const n = readSync(src, buffer, 0, buffer.length, null);
        if (n === 0) break;
        for (let off = 0; off < n; ) off += writeSync(dst, buffer, off, n - off);
      }
      // Owner before mode: chown clears setuid/setgid.
      if (job.owner) fchownSync(dst, job.owner.uid, job.owner.gid);
      if ((fstatSync(dst).mode & 0o7777) !== job.mode) fchmodSync(dst, job.mode);
      futimesSync(dst, job.atime, job.mtime);
    } finally {
      closeSync(dst);
    }
  } finally {
    closeSync(src);
  }
}

function copyBig(job: FileJob): void {
  copyFileSync(job.src, job.dst, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
  if (job.owner) lchownSync(job.dst, job.owner.uid, job.owner.gid);
  chmodSync(job.dst, job.mode);
  lutimesSync(job.dst, job.atime, job.mtime);
}

export function runJob(job: FileOpJob): void {
  if (job.kind === 'symlink') {
    symlinkSync(job.target, job.dst);
    if (job.owner) lchownSync(job.dst, job.owner.uid, job.owner.gid);
    lutimesSync(job.dst, job.atime, job.mtime);
  } else if (job.size >= KERNEL_COPY_MIN) copyBig(job);
  else copyContent(job);
}

/** Runs jobs in order; the first failure stops the rest and is thrown. */
export function runJobs(jobs: FileOpJob[]): void {
  for (const j of jobs) runJob(j);
}
