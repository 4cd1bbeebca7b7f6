// RunSpec -> OCI runtime config.json, matching what BuildKit hands runc through containerd's
// default spec: Docker's 14 capabilities, its masked/readonly /proc paths, the /dev, /proc,
// /sys mounts, generated /etc/hosts and /etc/resolv.conf bound read-only, no rlimits (the step
// inherits ours: values above the hard limit would fail without CAP_SYS_RESOURCE), and
// noNewPrivileges false so setuid programs (su, sudo) work.
import { posix } from 'node:path';
import { StrataError } from '../errors.js';
import type { ExecMount, RunSpec } from './types.js';

export const DEFAULT_HOSTNAME = 'strata';
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
  '/proc/scsi',
];

export const READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface OciConfig {
  ociVersion: string;
  hostname: string;
  root: { path: string; readonly: boolean };
  process: {
    terminal: boolean;
    cwd: string;
    noNewPrivileges: boolean;
    user: { uid: number; gid: number; additionalGids: number[] };
    args: string[];
    env: string[];
    capabilities: { bounding: string[]; effective: string[]; permitted: string[] };
  };
  mounts: OciMount[];
  linux: {
    namespaces: { type: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
    resources: { devices: { allow: boolean; access: string }[] };
  };
}

export interface GeneratedFiles {
  /** Host path of the generated /etc/hosts. */
  hostsPath: string;
  /** Host path of the generated /etc/resolv.conf. */
  resolvConfPath: string;
}

/** Absolute, normalised in-container path; rejects what the runtime would misread. */
export function containerPath(p: string, what: string): string {
  if (!p.startsWith('/')) {
    throw new StrataError('BAD_PATH', `${what} must be an absolute path inside the container, got "${p}"`);
  }
  return posix.normalize(p).replace(/(.)\/+$/, '$1');
}

function defaultMounts(): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev'] },
  ];
}

function userMount(m: ExecMount): OciMount {
  const destination = containerPath(m.target, 'mount target');
  if (m.type === 'bind') {
    if (!m.source.startsWith('/')) {
      throw new StrataError('BAD_PATH', `bind mount source must be an absolute host path, got "${m.source}"`);
    }
    return { destination, type: 'bind', source: m.source, options: ['rbind', m.readonly ? 'ro' : 'rw'] };
  }
  const options = ['nosuid'];
  if (m.size !== undefined) options.push(`size=${Math.floor(m.size)}`);
  if (m.mode !== undefined) options.push(`mode=${(m.mode & 0o7777).toString(8).padStart(4, '0')}`);
  return { destination, type: 'tmpfs', source: 'tmpfs', options };
}

/** A later mount on the same destination replaces the earlier one in its place (BuildKit's dedup). */
function dedupMounts(mounts: OciMount[]): OciMount[] {
  const out: OciMount[] = [];
  const at = new Map<string, number>();
  for (const m of mounts) {
    const i = at.get(m.destination);
    if (i !== undefined) out[i] = m;
    else {
      at.set(m.destination, out.length);
      out.push(m);
    }
  }
  return out;
}

function withDefaultPath(env: string[]): string[] {
  return env.some((e) => e.startsWith('PATH=')) ? [...env] : [...env, `PATH=${DEFAULT_PATH}`];
}

export function buildOciConfig(spec: RunSpec, files: GeneratedFiles): OciConfig {
  if (spec.args.length === 0) throw new StrataError('BAD_RUN', 'a RUN step needs a command, got an empty argv');
  const { uid, gid } = spec.user;
  // The primary gid belongs in the group list too (containerd's ensureAdditionalGids).
  const additionalGids = spec.user.additionalGids.includes(gid)
    ? [...spec.user.additionalGids]
    : [gid, ...spec.user.additionalGids];
  const caps = [...DEFAULT_CAPABILITIES];
  const roFile = ['nosuid', 'noexec', 'nodev', 'rbind', 'ro'];
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (spec.network === 'none') namespaces.push({ type: 'network' });
  return {
    ociVersion: '1.0.2',
    hostname: spec.hostname ?? DEFAULT_HOSTNAME,
    root: { path: spec.rootfs, readonly: false },
    process: {
      terminal: false,
      cwd: containerPath(spec.cwd, 'working directory'),
      noNewPrivileges: false,
      user: { uid, gid, additionalGids },
      args: [...spec.args],
      env: withDefaultPath(spec.env),
      capabilities: { bounding: caps, effective: [...caps], permitted: [...caps] },
    },
    mounts: dedupMounts([
      ...defaultMounts(),
      { destination: '/etc/resolv.conf', type: 'bind', source: files.resolvConfPath, options: roFile },
      { destination: '/etc/hosts', type: 'bind', source: files.hostsPath, options: [...roFile] },
      ...spec.mounts.map(userMount),
    ]),
    linux: {
      namespaces,
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
      resources: { devices: [{ allow: false, access: 'rwm' }] },
    },
  };
}
