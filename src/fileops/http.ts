// ADD <url>: download over http(s) into a temporary file, verify --checksum, keep Last-Modified.
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StrataError } from '../errors.js';

export interface Downloaded {
  file: string;
  /** Base name of the URL path, `__unnamed__` when it has none (as BuildKit names it). */
  filename: string;
  digest: string;
  size: number;
  lastModified?: Date;
}

export function isUrlSource(word: string): boolean {
  return word.startsWith('http://') || word.startsWith('https://');
}

export function urlFilename(url: string): string {
  let p: string;
  try {
    p = decodeURIComponent(new URL(url).pathname);
  } catch {
    return '__unnamed__';
  }
  const base = path.posix.basename(p);
  return base === '' || base === '.' || base === '/' ? '__unnamed__' : base;
}

function parseChecksum(checksum: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(checksum);
  if (!m) {
    throw new StrataError('ADD_BAD_CHECKSUM', `invalid checksum ${JSON.stringify(checksum)}: only sha256:<64 hex digits> is supported for URLs`, {
      hint: 'Compute it with `sha256sum FILE` and pass --checksum=sha256:<that hex>.',
    });
  }
  return checksum;
}

/** Download `url` into `dir` (which must exist). Throws ADD_URL_FAILED or ADD_CHECKSUM_MISMATCH. */
export async function downloadUrl(url: string, dir: string, checksum?: string): Promise<Downloaded> {
  const want = checksum !== undefined ? parseChecksum(checksum) : undefined;
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow' });
  } catch (e) {
    throw new StrataError('ADD_URL_FAILED', `failed to load ${url}: ${(e as Error).cause ?? (e as Error).message}`, {
      hint: 'Check the URL and that this machine can reach it.',
      cause: e,
    });
  }
  if (!res.ok || !res.body) {
    throw new StrataError('ADD_URL_FAILED', `failed to load ${url}: invalid response status ${res.status}`, {
      hint: 'The server refused the download; check the URL. ADD does not send credentials.',
    });
  }
  const filename = urlFilename(url);
  const file = path.join(dir, 'download');
  const h = createHash('sha256');
  let size = 0;
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (c: Buffer) => {
    h.update(c);
    size += c.length;
  });
  await pipeline(body, createWriteStream(file, { mode: 0o600 }));
  const digest = 'sha256:' + h.digest('hex');
  if (want !== undefined && digest !== want) {
    await fsp.rm(file, { force: true });
    throw new StrataError('ADD_CHECKSUM_MISMATCH', `digest mismatch for ${url}: got ${digest}, expected ${want}`, {
      hint: 'The file at the URL changed, or the --checksum value is wrong.',
    });
  }
  const lm = res.headers.get('last-modified');
  const lastModified = lm ? new Date(lm) : undefined;
  return { file, filename, digest, size, lastModified: lastModified && !isNaN(lastModified.getTime()) ? lastModified : undefined };
}
