// The parser's output, as BuildKit's parser.Node has it: one entry per instruction, nothing expanded.
// `instructions.ts` turns these into typed instructions; the frontend expands their words.

export interface Heredoc {
  /** The delimiter after quote removal (`EOF` for `<<'EOF'`). */
  name: string;
  /** The body: every line up to the terminator, each with its `\n` (tabs stripped for `<<-`). */
  content: string;
  /** False when the delimiter was quoted: the body is used verbatim, no variable expansion. */
  expand: boolean;
  /** `<<-`: leading tabs were removed from the body lines. */
  chomp: boolean;
  /** `3<<EOF` gives 3; 0 when none was written. */
  fileDescriptor: number;
  /** The body exactly as read (tabs kept even for `<<-`), as BuildKit stores it; ONBUILD triggers use it. */
  rawContent?: string;
}

export interface RawInstruction {
  /** Lower-cased keyword (`run`, `copy`, ... or an unknown word as written, lower-cased as Go does). */
  keyword: string;
  /** The keyword exactly as written (`Run`, `FNTRYPOINT`), for messages. */
  rawKeyword?: string;
  /** The logical line (continuations joined), as BuildKit's Node.Original. */
  original: string;
  /** Flags in order, as read (`--from=build`), quotes and escapes processed per the flag rule. */
  flags: string[];
  /** Arguments as the dump prints them. Empty for ONBUILD (see `nested`). */
  args: string[];
  /** ONBUILD's nested instruction. */
  nested?: RawInstruction;
  /** Exec (JSON array) form. */
  json: boolean;
  heredocs: Heredoc[];
  /** 1-based physical lines. */
  startLine: number;
  endLine: number;
  /**
   * Comment lines right before the instruction (BuildKit's PrevComment): text after the first byte of the
   * line, trimmed; a bare `#` clears the list; blank lines do not. Used for `# strata:cache-ttl=...`.
   */
  comments?: string[];
}

export interface Directives {
  syntax?: string;
  escape: '\\' | '`';
  check?: string;
}

export interface ParseWarning {
  line: number;
  message: string;
}

export interface ParsedDockerfile {
  /** Name used in messages (`Dockerfile`, `-` for stdin). */
  file: string;
  instructions: RawInstruction[];
  directives: Directives;
  warnings: ParseWarning[];
}
