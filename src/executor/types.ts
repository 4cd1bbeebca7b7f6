// The executor's data shapes, shared by spec building, running and the solver that calls us.

export type RuntimeName = 'crun' | 'runc';

export interface Runtime {
  name: RuntimeName;
  /** Absolute path of the runtime binary. */
  path: string;
}

export type ExecMount =
  | { type: 'bind'; source: string; target: string; readonly: boolean }
  | { type: 'tmpfs'; target: string; size?: number; mode?: number };

export interface UserIds {
  uid: number;
  gid: number;
  additionalGids: number[];
}

export interface RunSpec {
  /** Absolute real path (no symlinks: runc refuses them) of the mounted rootfs. */
  rootfs: string;
  /** argv; the solver already applied SHELL for the shell form. */
  args: string[];
  /** KEY=VALUE; PATH gets BuildKit's default when absent. */
  env: string[];
  /** In-container path; created (owned by the step's user) when missing, as BuildKit does. */
  cwd: string;
  user: UserIds;
  /** host = the host's network namespace; none = a private one with only lo (up). */
  network: 'none' | 'host';
  /** Defaults to 'strata'. Also written into the generated /etc/hosts. */
  hostname?: string;
  mounts: ExecMount[];
  stdout?: (chunk: Buffer) => void;
  stderr?: (chunk: Buffer) => void;
  /** Abort => SIGKILL the container, clean up, reject with StrataError code 'ABORTED'. */
  signal?: AbortSignal;
}

export interface RunResult {
  /**
   * The process's exit code (`exit 300` gives 44, SIGKILL gives 137). When the runtime cannot
   * start the process at all (missing executable, bad cwd, a mount that fails) the runtime exits
   * with its own non-zero code (1) and explains on stderr, which was streamed to `stderr`.
   */
  exitCode: number;
  durationMs: number;
}
