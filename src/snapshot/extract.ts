// Unpacks one OCI layer tar into a directory in overlayfs form, usable directly as a lowerdir.
//
// The tar is parsed and checked here (see overlay-rewrite.ts for the path policy), rewritten
// into overlay form and piped into GNU tar, which lays it down with owners, modes, mtimes,
// xattrs, device nodes and hard links. GNU tar never sees a name we have not checked, and it
// never follows symlinks in the way of an extraction: it unlinks before creating, and it
// creates absolute or ".."-containing symlinks as placeholders until the end (we do not pass
// --absolute-names), so even its own path walks stay inside the directory.
import { constants as fsc } from 'node:fs';
import { lstat, mkdir, open, readdir, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setAttribute } from 'fs-xattr';
import { StrataError, isStrataError } from '../errors.js';
import { END_OF_ARCHIVE, TarFormatError, encodeHeader, padding } from './tar-format.js';
import { readTar, type TarEntry } from './tar-reader.js';
import { OPAQUE_XATTR, OverlayRewriter } from './overlay-rewrite.js';
import { ProcessError, coalesce, decompressed, digesting, spawnFilter } from './streams.js';
import { StreamDigest } from './stream-workers.js';

export interface ExtractResult {
  /** sha256 of the uncompressed tar, `sha256:<hex>` */
  diffId: string;
  /** bytes of the uncompressed tar */
  size: number;
}

const GNU_TAR_ARGS = [
  '-x',
  '-f',
  '-',
  '--numeric-owner',
  '--same-owner',
  '--same-permissions',
  '--xattrs',
  '--xattrs-include=*',
  '--no-acls',
  '--no-selinux',
  '--warning=no-unknown-keyword',
  '--warning=no-timestamp',
];

async function* overlayTar(entries: AsyncIterable<TarEntry>, rewriter: OverlayRewriter): AsyncGenerator<Buffer> {
  for await (const entry of entries) {
    const planned = rewriter.plan(entry.header);
    for (const h of planned) {
      yield encodeHeader(h);
      if (h.type === 'file' && h.size > 0) {
        for await (const chunk of entry.body()) yield chunk;
        const pad = padding(h.size);
        if (pad) yield Buffer.alloc(pad);
      }
    }
  }
  yield END_OF_ARCHIVE;
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** Sets the opaque xattr through an O_NOFOLLOW descriptor: the path is never resolved twice. */
async function markOpaque(destDir: string, rel: string): Promise<void> {
  const path = rel === '' ? Buffer.from(destDir) : Buffer.concat([Buffer.from(`${destDir}/`), Buffer.from(rel, 'latin1')]);
  const fh = await open(path, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
  try {
    await setAttribute(`/proc/self/fd/${fh.fd}`, OPAQUE_XATTR, 'y');
  } finally {
    await fh.close();
  }
}

export async function extractLayer(
  input: NodeJS.ReadableStream | Readable,
  destDir: string,
  opts: { label: string },
): Promise<ExtractResult> {
  if (await exists(destDir)) {
    if ((await readdir(destDir)).length > 0) {
      throw new StrataError('LAYER_DEST_NOT_EMPTY', `cannot unpack layer ${opts.label} into ${destDir}: the directory is not empty`, {
        hint: 'Layers are unpacked into fresh directories; remove it first.',
      });
    }
  } else {
    await mkdir(destDir, { recursive: true, mode: 0o755 });
  }

  const hash = new StreamDigest();
  const rewriter = new OverlayRewriter(opts.label);
  try {
    const entries = readTar(digesting(decompressed(input as AsyncIterable<Buffer | string>), hash));
    await feedProcess(coalesce(overlayTar(entries, rewriter)), 'tar', [...GNU_TAR_ARGS, '-C', destDir]);
    for (const dir of [...rewriter.opaque].sort()) await markOpaque(destDir, dir);
    return { diffId: await hash.digest(), size: hash.bytes };
  } catch (e) {
    await rm(destDir, { recursive: true, force: true });
    throw layerError(e, opts.label);
  }
}

/**
 * Writes `bytes` to the stdin of `cmd args` and waits for it to exit 0. Our own error (a bad
 * layer, a failed read) wins over the process's; a broken pipe only means the process stopped
 * reading, so then its exit code and stderr explain (as a ProcessError).
 */
export async function feedProcess(bytes: AsyncIterable<Buffer>, cmd: string, args: string[]): Promise<void> {
  const { child, exited, stderrTail } = spawnFilter(cmd, args, 'ignore');
  try {
    let feedError: unknown = null;
    try {
      await pipeline(Readable.from(bytes), child.stdin);
    } catch (e) {
      feedError = e;
    }
    if (feedError) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      const code = await exited.catch(() => null);
      const brokenPipe = (feedError as { code?: string }).code === 'EPIPE';
      if (brokenPipe && code !== 0) throw new ProcessError(cmd, code, stderrTail());
      throw feedError;
    }
    const code = await exited;
    if (code !== 0) throw new ProcessError(cmd, code, stderrTail());
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited.catch(() => undefined);
  }
}

/** The user-facing error for a failure while reading or laying down layer `label`. */
export function layerError(e: unknown, label: string): unknown {
  if (isStrataError(e)) return e;
  if (e instanceof TarFormatError) {
    return new StrataError('BAD_LAYER', `layer ${label} is not a valid tar archive: ${e.message}`, {
      hint: 'The blob may be truncated or corrupted; remove it from the store and pull again.',
      cause: e,
    });
  }
  if (e instanceof ProcessError) {
    return new StrataError('LAYER_EXTRACT_FAILED', `unpacking layer ${label} failed: ${e.message}`, {
      hint: e.command === 'zstd' ? 'The zstd blob could not be decompressed; it may be corrupted.' : 'See the tar message above; the layer may use a feature strata cannot lay down.',
      cause: e,
    });
  }
  const code = (e as { code?: string } | null)?.code;
  if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') {
    return new StrataError('BAD_LAYER', `layer ${label}: gzip data is corrupt (${(e as Error).message})`, {
      hint: 'The blob may be truncated or corrupted; remove it from the store and pull again.',
      cause: e,
    });
  }
  return e;
}
