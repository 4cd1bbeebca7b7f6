// Which OCI runtime runs steps, and how to invoke it on this host.
import { access, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { StrataError } from '../errors.js';
import type { Runtime, RuntimeName } from './types.js';

export type { Runtime, RuntimeName } from './types.js';

const RUNTIMES: readonly RuntimeName[] = ['crun', 'runc'];
// runc lives in /usr/sbin on Debian, which a non-login PATH may lack.
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function searchDirs(): string[] {
  return [...(process.env.PATH ?? '').split(delimiter).filter((d) => d.startsWith('/')), ...EXTRA_DIRS];
}

async function findExecutable(name: string, dirs: readonly string[]): Promise<string | undefined> {
  for (const dir of dirs) {
    const p = join(dir, name);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function installHint(names: readonly RuntimeName[]): string {
  return names.map((n) => `apt-get install ${n}`).join(' or ');
}

/**
 * The runtime to use: STRATA_RUNTIME (crun|runc) if set, else `preferred`, else crun, else runc.
 * A runtime asked for by name must be installed; otherwise the first one found wins.
 */
export async function detectRuntime(preferred?: RuntimeName): Promise<Runtime> {
  return detectRuntimeIn(searchDirs(), preferred);
}

/** detectRuntime looking only in `dirs` (for tests and unusual installs). */
export async function detectRuntimeIn(dirs: readonly string[], preferred?: RuntimeName): Promise<Runtime> {
  const fromEnv = process.env.STRATA_RUNTIME;
  if (fromEnv !== undefined && fromEnv !== '' && !RUNTIMES.includes(fromEnv as RuntimeName)) {
    throw new StrataError('BAD_RUNTIME', `STRATA_RUNTIME=${fromEnv} is not a supported OCI runtime`, {
      hint: 'set STRATA_RUNTIME to crun or runc, or unset it',
    });
  }
  const wanted = (fromEnv || preferred) as RuntimeName | undefined;
  if (wanted) {
    const path = await findExecutable(wanted, dirs);
    if (!path) {
      const via = fromEnv ? ` (STRATA_RUNTIME=${fromEnv})` : '';
      throw new StrataError('NO_RUNTIME', `the OCI runtime ${wanted}${via} is not installed`, {
        hint: `install it with \`${installHint([wanted])}\`, or choose the other runtime`,
      });
    }
    return { name: wanted, path };
  }
  for (const name of RUNTIMES) {
    const path = await findExecutable(name, dirs);
    if (path) return { name, path };
  }
  throw new StrataError('NO_RUNTIME', 'no OCI runtime found: strata runs RUN steps with crun or runc', {
    hint: `install one with \`${installHint(RUNTIMES)}\` (Debian packages crun, runc)`,
  });
}

export interface CgroupLayout {
  /** cgroup2 mount points that are not the only cgroup hierarchy (hybrid mode). */
  hybridUnifiedMounts: string[];
}

/** Mount points of mountinfo lines, octal escapes (`\040`) decoded. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseCgroupLayout(mountinfo: string): CgroupLayout {
  const v2: string[] = [];
  let v1 = false;
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    const mountPoint = line.slice(0, sep).split(' ')[4];
    if (mountPoint === undefined) continue;
    if (fstype === 'cgroup2') v2.push(unescapeMountPath(mountPoint));
    else if (fstype === 'cgroup') v1 = true;
  }
  return { hybridUnifiedMounts: v1 ? v2 : [] };
}

let layoutPromise: Promise<CgroupLayout> | undefined;

/** Read once per process: the cgroup layout does not change under a running build. */
export function hostCgroupLayout(): Promise<CgroupLayout> {
  layoutPromise ??= readFile('/proc/self/mountinfo', 'utf8').then(parseCgroupLayout);
  return layoutPromise;
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface Invocation {
  file: string;
  args: string[];
}

/**
 * argv for `RUNTIME --root ROOT ...args`. crun refuses hybrid cgroups ("cgroups in hybrid mode
 * not supported"), so on such hosts it runs in a private mount namespace where the cgroup2
 * mount is gone and it sees plain v1; mounts made before (the rootfs overlay) stay visible.
 */
export function runtimeInvocation(rt: Runtime, root: string, args: string[], layout: CgroupLayout): Invocation {
  const argv = ['--root', root, ...args];
  if (rt.name !== 'crun' || layout.hybridUnifiedMounts.length === 0) return { file: rt.path, args: argv };
  const umounts = layout.hybridUnifiedMounts.map((m) => `umount ${shQuote(m)} 2>/dev/null; `).join('');
  return {
    file: 'unshare',
    args: ['-m', '--propagation', 'private', 'sh', '-c', `${umounts}exec "$0" "$@"`, rt.path, ...argv],
  };
}
