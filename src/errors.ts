// The one error type every stage throws for problems the user can act on. The CLI prints
// `where: message` plus the hint and exits non-zero; anything else is a bug and shows a stack.
export interface SourcePosition {
  file: string;
  line?: number;
  endLine?: number;
}

export class StrataError extends Error {
  readonly code: string;
  readonly position?: SourcePosition;
  readonly hint?: string;

  constructor(code: string, message: string, opts: { position?: SourcePosition; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'StrataError';
    this.code = code;
    this.position = opts.position;
    this.hint = opts.hint;
  }

  /** `FILE:LINE: message`, the shape BuildKit and compilers use. */
  where(): string {
    if (!this.position) return this.message;
    const { file, line } = this.position;
    return line !== undefined ? `${file}:${line}: ${this.message}` : `${file}: ${this.message}`;
  }
}

export function isStrataError(e: unknown): e is StrataError {
  return e instanceof StrataError;
}
