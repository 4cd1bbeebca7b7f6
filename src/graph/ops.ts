// The build graph: what each vertex does, independent of how or whether it runs. The frontend
// produces it; the solver computes keys from it and executes what misses.

/** Where COPY/ADD or a bind mount reads files from. */
export type FileSource =
  | { kind: 'context'; name: string }  // 'context' = the main build context, or a named --build-context dir
  | { kind: 'input'; index: number };  // the result of vertex.inputs[index] (a stage or an image)

export interface BindMountDef {
  type: 'bind';
  target: string;
  source: string;          // path inside the source
  from: FileSource;
  readonly: boolean;
}

export interface CacheMountDef {
  type: 'cache';
  id: string;
  target: string;
  sharing: 'shared' | 'private' | 'locked';
  from?: FileSource;       // seed from a stage/image
  source?: string;
  mode: number;
  uid: number;
  gid: number;
  readonly: boolean;
}

export interface TmpfsMountDef {
  type: 'tmpfs';
  target: string;
  size?: number;
}

export interface SecretMountDef {
  type: 'secret';
  id: string;
  target: string;
  required: boolean;
  mode: number;
  uid: number;
  gid: number;
}

export type MountDef = BindMountDef | CacheMountDef | TmpfsMountDef | SecretMountDef;

export interface ExecOp {
  kind: 'exec';
  args: string[];
  env: string[];
  /** HTTP_PROXY and friends from --build-arg: in the step's environment, never in its cache key (as BuildKit). */
  proxyEnv?: string[];
  cwd: string;
  user: string;
  network: 'default' | 'none' | 'host';
  security: 'sandbox' | 'insecure';
  mounts: MountDef[];
  /** Heredoc files the command reads (`RUN <<EOF`), written into a tmpfs-like bind before running. */
  files?: { path: string; content: string; mode: number }[];
}

export interface CopyOp {
  kind: 'copy';
  from: FileSource;
  sources: string[];
  dest: string;
  workdir: string;
  chown?: string;
  chmod?: string;
  excludes: string[];
  parents: boolean;
  link: boolean;
  isAdd: boolean;
  checksum?: string;
  unpack?: boolean;
  heredocs: { name: string; content: string }[];
}

export interface MkdirOp {
  kind: 'mkdir';
  path: string;
  user: string;
}

/** A stage's starting filesystem. */
export type SourceOp =
  | { kind: 'scratch' }
  | { kind: 'image'; ref: string }             // registry reference or local image name
  | { kind: 'layout'; dir: string; ref?: string }; // oci-layout://DIR[:TAG|@DIGEST]

export type Op = SourceOp | ExecOp | CopyOp | MkdirOp;

export interface SourceLocation {
  file: string;
  line: number;
  endLine: number;
}

export interface Vertex {
  id: number;
  op: Op;
  /** inputs[0] is the filesystem the op applies to (absent for sources); the rest feed FileSources. */
  inputs: Vertex[];
  /** What the user wrote, for progress and explanations (`RUN make`). */
  instruction: string;
  location?: SourceLocation;
  stage: string;
  /** `[build 2/4]` in progress output. */
  stepLabel: string;
  /** Build args this vertex's definition depends on, with their values (for explanations). */
  args: Record<string, string>;
  cacheTtlMs?: number;
  /** --no-cache / --no-cache-filter hit this vertex. */
  noCache: boolean;
}
