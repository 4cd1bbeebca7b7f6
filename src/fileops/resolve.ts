// In-container paths to host paths, the way Go's securejoin does it: symlinks are followed as the
// container would see them (absolute targets restart at root, `..` stops at root), so a
// destination or a --from source can never reach the host's own files.
import { resolveInside } from '../context/walk.js';

/**
 * Host path for `path` inside `root`, following symlinks inside root. Missing components are
 * appended as written. `followFinal: false` leaves a symlink in the last component unresolved.
 */
export async function resolveInRoot(root: string, path: string, opts: { followFinal?: boolean } = {}): Promise<string> {
  const r = await resolveInside(root, path, { followFinal: opts.followFinal ?? true, escape: 'clamp' });
  return r.host;
}
