// Typed instructions: flags validated and split out, words still unexpanded (the frontend expands
// them with the ARG/ENV scope in force). Every instruction keeps its source lines.
import type { Heredoc } from './ast.js';

interface Base {
  /** The logical line as written (for progress output and explanations). */
  original: string;
  startLine: number;
  endLine: number;
}

/** A command in exec form (`["a","b"]`) or shell form (one string run by SHELL). */
export interface CommandLine {
  args: string[];
  shellForm: boolean;
}

export interface FromInstruction extends Base {
  kind: 'from';
  image: string;
  stageName?: string;
  platform?: string;
}

export interface KeyValue {
  key: string;
  /** Raw word after `=`, quotes and escapes still in it; undefined for `ARG name` without default. */
  value?: string;
}

export interface ArgInstruction extends Base {
  kind: 'arg';
  args: KeyValue[];
}

export interface EnvInstruction extends Base {
  kind: 'env' | 'label';
  /** Legacy `ENV k v` form has one pair whose value is the raw rest of the line. */
  pairs: Required<KeyValue>[];
  /** Written in the legacy `ENV k v` form (BuildKit's NoDelim; history shows `k v`, not `k=v`). */
  legacy?: boolean;
}

export interface RunInstruction extends Base {
  kind: 'run';
  command: CommandLine;
  heredocs: Heredoc[];
  /** Raw `--mount=` values, in order (parsed by the frontend after expansion). */
  mounts: string[];
  network?: string;
  security?: string;
  /** Raw `--device=` values, in order (BuildKit accepts them; CDI devices). */
  devices?: string[];
  /** strata extension: `--cache-ttl=24h` (or `# strata:cache-ttl=24h` on the line before). */
  cacheTtl?: string;
}

export interface CopyInstruction extends Base {
  kind: 'copy' | 'add';
  /** Source words (unexpanded); heredoc sources appear as `<<NAME` words and in `heredocs`. */
  sources: string[];
  dest: string;
  heredocs: Heredoc[];
  from?: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  parents: boolean;
  excludes: string[];
  /** ADD only. */
  checksum?: string;
  keepGitDir?: boolean;
  unpack?: boolean;
  cacheTtl?: string;
}

export interface CmdInstruction extends Base {
  kind: 'cmd' | 'entrypoint';
  command: CommandLine;
}

export interface ShellInstruction extends Base {
  kind: 'shell';
  shell: string[];
}

export interface WorkdirInstruction extends Base {
  kind: 'workdir';
  path: string;
}

export interface UserInstruction extends Base {
  kind: 'user';
  user: string;
}

export interface ExposeInstruction extends Base {
  kind: 'expose';
  ports: string[];
}

export interface VolumeInstruction extends Base {
  kind: 'volume';
  paths: string[];
}

export interface StopSignalInstruction extends Base {
  kind: 'stopsignal';
  signal: string;
}

export interface HealthcheckInstruction extends Base {
  kind: 'healthcheck';
  /** `["NONE"]`, `["CMD", ...args]` or `["CMD-SHELL", command]`, as in the image config. */
  test: string[];
  interval?: string;
  timeout?: string;
  startPeriod?: string;
  startInterval?: string;
  retries?: number;
}

export interface MaintainerInstruction extends Base {
  kind: 'maintainer';
  name: string;
}

export interface OnbuildInstruction extends Base {
  kind: 'onbuild';
  /** The trigger as it goes into the image config (`RUN echo hi`). */
  expression: string;
}

export type Instruction =
  | FromInstruction
  | ArgInstruction
  | EnvInstruction
  | RunInstruction
  | CopyInstruction
  | CmdInstruction
  | ShellInstruction
  | WorkdirInstruction
  | UserInstruction
  | ExposeInstruction
  | VolumeInstruction
  | StopSignalInstruction
  | HealthcheckInstruction
  | MaintainerInstruction
  | OnbuildInstruction;
