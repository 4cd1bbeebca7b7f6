// sha256 digests of bytes and streams, in the `sha256:<hex>` form registries speak.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { StrataError } from '../errors.js';

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function sha256File(file: string): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** Hex part of a digest, for file names (`sha256:abc` -> `abc`). */
export function digestHex(digest: string): string {
  const i = digest.indexOf(':');
  return i < 0 ? digest : digest.slice(i + 1);
}

export function digestAlgorithm(digest: string): string {
  const i = digest.indexOf(':');
  return i < 0 ? '' : digest.slice(0, i);
}

/** A hasher for the digest's algorithm; we only verify what node can hash. */
export function hasherFor(digest: string): Hash {
  const algo = digestAlgorithm(digest);
  if (algo !== 'sha256' && algo !== 'sha512') {
    throw new StrataError('UNSUPPORTED_DIGEST', `cannot verify digest "${digest}": algorithm "${algo}" is not supported`, {
      hint: 'strata verifies sha256 and sha512 digests only',
    });
  }
  return createHash(algo);
}

export function digestOf(digest: string, data: Buffer): string {
  return `${digestAlgorithm(digest)}:${hasherFor(digest).update(data).digest('hex')}`;
}
