// A new layer whose files are mostly hard links to an older layer's files (a COPY that reruns after
// a small change: fileops/link-reuse.ts) would have its tar written by opening and reading every one
// of those files again, though the older layer's tar already holds their bytes. This copies each
// such entry's data out of the older tar instead: one pread in one open file against an open, a
// read and a close per file.
//
// Why the bytes are the same: an entry is taken only for a file of the new upper that the linker
// made as a hard link to the older layer's file at the same path (the same inode, on the same
// device: SpliceSource.linked), and only when the older tar's header blocks for that path equal the
// ones this diff writes (so path, mode, owner, mtime, size and xattrs match, and a tar written by an
// older strata with other header rules is not spliced). A layer's files are never written once it
// is adopted, and its tar was written from them or they were unpacked from it, so the data blocks
// are that file's content. (A blob damaged on disk would pass its damage on; `strata doctor`
// checks blobs against their digests.) Anything else is read from the file as usual.
import { closeSync, lstatSync, openSync, readSync } from 'node:fs';
import { BLOCK, HEADER_ONLY, cstring, decodePax, isZeroBlock, padding, parseNumeric } from './tar-format.js';
import type { FsNode } from './fs-walk.js';

/** An older layer, and the files a new upper shares with it. */
export interface SpliceSource {
  /** its unpacked dir */
  layerDir: string;
  /** its uncompressed tar */
  tar: string;
  /**
   * The files of the upper that are hard links to the older layer's file at the same path, as
   * inode -> path (relative, a binary string like FsNode.path): what the linker made.
   */
  linked: ReadonlyMap<number, string>;
}

/** Where a regular file's entry sits in the older tar: its header blocks, then its data. */
export interface SplicedEntry {
  start: number;
  dataStart: number;
  size: number;
}

/** Reads of the older tar go through a window this big (headers of small files sit close together). */
const WINDOW = 256 * 1024;
const MAX_META = 1 << 20;
/** Records that describe the entry after them. */
const META = new Set(['x', 'L', 'K', 'g']);
const USTAR = Buffer.from('ustar\u0000', 'latin1');

/**
 * File entries by name, with pax `path` and GNU long names folded in. Only what finding an entry
 * needs is decoded (no checksums): a header read wrong here only makes fill() refuse the entry,
 * and a field that is no number at all ends the index (TarSplice.candidate: nothing is spliced).
 */
function indexTar(fd: number): Map<string, SplicedEntry> {
  const out = new Map<string, SplicedEntry>();
  const win = Buffer.allocUnsafe(WINDOW);
  let winStart = 0;
  let winLen = 0;
  /** Offset in `win` of the block at `off`, reading a new window when needed; -1 at the end. */
  const at = (off: number): number => {
    if (off < winStart || off + BLOCK > winStart + winLen) {
      winStart = off;
      winLen = readSync(fd, win, 0, WINDOW, off);
      if (winLen < BLOCK) return -1;
    }
    return off - winStart;
  };
  let off = 0;
  let start = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  for (;;) {
    const i = at(off);
    if (i < 0 || isZeroBlock(win.subarray(i, i + BLOCK))) break;
    const flag = win[i + 156] === 0 ? '0' : String.fromCharCode(win[i + 156]!);
    const size = HEADER_ONLY.has(flag) ? 0 : parseNumeric(win, i + 124, 12);
    if (size < 0) break;
    const dataStart = off + BLOCK;
    if (META.has(flag)) {
      if (size > MAX_META) break;
      const data = Buffer.allocUnsafe(size);
      if (readSync(fd, data, 0, size, dataStart) !== size) break;
      // 'K' and 'g' are never written by strata: the header comparison refuses what follows
      if (flag === 'L') longName = cstring(data, 0, size);
      else if (flag === 'x') paxPath = decodePax(data).get('path')?.toString('latin1');
    } else {
      if (flag === '0' || flag === '7') {
        let name = cstring(win, i, 100);
        if (win.compare(USTAR, 0, 6, i + 257, i + 263) === 0) {
          const prefix = cstring(win, i + 345, 155);
          if (prefix) name = `${prefix}/${name}`;
        }
        out.set(paxPath ?? longName ?? name, { start, dataStart, size });
      }
      longName = paxPath = undefined;
    }
    off = dataStart + size + padding(size);
    if (!META.has(flag)) start = off;
  }
  return out;
}

export class TarSplice {
  private index?: Map<string, SplicedEntry>;
  private scratch = Buffer.allocUnsafe(64 * 1024);
  /** Entries taken from the older tar, and candidates whose header differed. */
  readonly counts = { spliced: 0, refused: 0 };

  private constructor(private readonly source: SpliceSource, private readonly fd: number, private readonly dev: number) {}

  /** Undefined when there is nothing to splice or the older tar cannot be opened (gone, or kept only compressed). */
  static open(source: SpliceSource): TarSplice | undefined {
    if (source.linked.size === 0) return undefined;
    const dir = lstatSync(source.layerDir, { throwIfNoEntry: false });
    if (!dir?.isDirectory()) return undefined;
    try {
      return new TarSplice(source, openSync(source.tar, 'r'), dir.dev);
    } catch {
      return undefined;
    }
  }

  /** The older tar's entry for a regular file of the new upper that is the older layer's file itself. */
  candidate(n: FsNode): SplicedEntry | undefined {
    if (n.kind !== 'file' || n.st.dev !== this.dev || this.source.linked.get(n.st.ino) !== n.path) return undefined;
    try {
      this.index ??= indexTar(this.fd);
    } catch {
      this.index = new Map();
    }
    const e = this.index.get(n.path);
    return e && e.size === n.st.size ? e : undefined;
  }

  /**
   * Copies the entry's data into `buf` at `at` when the older tar's header blocks equal `header`
   * (the blocks this diff wrote for it); returns false, writing nothing past `at`, otherwise.
   */
  fill(e: SplicedEntry, header: Buffer, buf: Buffer, at: number): boolean {
    const headerLen = e.dataStart - e.start;
    if (headerLen !== header.length) return this.refuse();
    const len = headerLen + e.size;
    if (this.scratch.length < len) this.scratch = Buffer.allocUnsafe(Math.max(len, this.scratch.length * 2));
    if (readSync(this.fd, this.scratch, 0, len, e.start) !== len) return this.refuse();
    if (this.scratch.compare(header, 0, headerLen, 0, headerLen) !== 0) return this.refuse();
    this.scratch.copy(buf, at, headerLen, len);
    this.counts.spliced++;
    return true;
  }

  private refuse(): false {
    this.counts.refused++;
    return false;
  }

  close(): void {
    closeSync(this.fd);
  }
}
