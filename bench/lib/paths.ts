// Where the repository is, from a compiled bench file anywhere under dist/bench/.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && /"name":\s*"strata"/.test(readFileSync(pkg, 'utf8'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the strata repository above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export function strataCommand(root = repoRoot()): { cmd: string; args: string[] } {
  return { cmd: process.execPath, args: [join(root, 'bin', 'strata')] };
}
