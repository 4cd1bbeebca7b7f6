// `RUN --mount=...` values, read with BuildKit's option names and defaults.
import { StrataError } from '../errors.js';
import type { FileSource, MountDef } from '../graph/ops.js';
import posix from 'node:path/posix';

export interface MountParseContext {
  workdir: string;
  /** Turn a `from=` value into a FileSource (adds an input vertex when needed). */
  resolveFrom(from: string): FileSource;
  position: { file: string; line: number };
}

function bool(v: string | undefined, name: string, ctx: MountParseContext): boolean {
  if (v === undefined || v === '' || v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new StrataError('BAD_MOUNT', `--mount: ${name}=${v} is not a boolean`, { position: ctx.position });
}

function int(v: string, name: string, ctx: MountParseContext, base = 10): number {
  const n = base === 8 ? parseInt(v, 8) : Number(v);
  if (!Number.isInteger(n) || n < 0) {
    throw new StrataError('BAD_MOUNT', `--mount: ${name}=${v} is not a valid number`, { position: ctx.position });
  }
  return n;
}

/** Splits a CSV field list the way Go's csv reader does for these flags (quotes allowed). */
export function splitCsv(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') {
      if (q && s[i + 1] === '"') {
        cur += '"';
        i++;
      } else q = !q;
    } else if (c === ',' && !q) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x !== '');
}

export function parseMount(value: string, ctx: MountParseContext): MountDef {
  const fields = new Map<string, string | undefined>();
  for (const f of splitCsv(value)) {
    const eq = f.indexOf('=');
    const k = (eq < 0 ? f : f.slice(0, eq)).toLowerCase();
    fields.set(k, eq < 0 ? undefined : f.slice(eq + 1));
  }
  const type = fields.get('type') ?? 'bind';
  const targetRaw = fields.get('target') ?? fields.get('dst') ?? fields.get('destination');
  const abs = (p: string) => posix.resolve(ctx.workdir || '/', p);
  const known = new Set(['type', 'target', 'dst', 'destination', 'source', 'src', 'from', 'readonly', 'ro', 'rw', 'readwrite', 'id', 'sharing', 'mode', 'uid', 'gid', 'required', 'size', 'env']);
  for (const k of fields.keys()) {
    if (!known.has(k)) {
      throw new StrataError('BAD_MOUNT', `--mount: unknown option "${k}" in "${value}"`, { position: ctx.position });
    }
  }
  let readonly: boolean | undefined;
  if (fields.has('readonly')) readonly = bool(fields.get('readonly'), 'readonly', ctx);
  if (fields.has('ro')) readonly = bool(fields.get('ro'), 'ro', ctx);
  if (fields.has('rw')) readonly = !bool(fields.get('rw'), 'rw', ctx);
  if (fields.has('readwrite')) readonly = !bool(fields.get('readwrite'), 'readwrite', ctx);
  const source = fields.get('source') ?? fields.get('src');
  const from = fields.get('from');

  switch (type) {
    case 'bind': {
      if (!targetRaw) throw new StrataError('BAD_MOUNT', `--mount=type=bind needs target=PATH`, { position: ctx.position });
      return {
        type: 'bind',
        target: abs(targetRaw),
        source: source ?? '/',
        from: from ? ctx.resolveFrom(from) : { kind: 'context', name: 'context' },
        readonly: readonly ?? true,
      };
    }
    case 'cache': {
      if (!targetRaw) throw new StrataError('BAD_MOUNT', `--mount=type=cache needs target=PATH`, { position: ctx.position });
      const target = abs(targetRaw);
      const sharing = fields.get('sharing') ?? 'shared';
      if (sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked') {
        throw new StrataError('BAD_MOUNT', `--mount: sharing=${sharing} is not one of shared, private, locked`, { position: ctx.position });
      }
      return {
        type: 'cache',
        id: fields.get('id') || target,
        target,
        sharing,
        from: from ? ctx.resolveFrom(from) : undefined,
        source: source,
        mode: fields.has('mode') ? int(fields.get('mode')!, 'mode', ctx, 8) : 0o755,
        uid: fields.has('uid') ? int(fields.get('uid')!, 'uid', ctx) : 0,
        gid: fields.has('gid') ? int(fields.get('gid')!, 'gid', ctx) : 0,
        readonly: readonly ?? false,
      };
    }
    case 'tmpfs': {
      if (!targetRaw) throw new StrataError('BAD_MOUNT', `--mount=type=tmpfs needs target=PATH`, { position: ctx.position });
      const size = fields.get('size');
      return { type: 'tmpfs', target: abs(targetRaw), size: size ? parseSize(size, ctx) : undefined };
    }
    case 'secret': {
      const id = fields.get('id') ?? (targetRaw ? posix.basename(targetRaw) : undefined);
      if (!id) throw new StrataError('BAD_MOUNT', `--mount=type=secret needs id=ID or target=PATH`, { position: ctx.position });
      return {
        type: 'secret',
        id,
        target: targetRaw ? abs(targetRaw) : `/run/secrets/${id}`,
        required: fields.has('required') ? bool(fields.get('required'), 'required', ctx) : false,
        mode: fields.has('mode') ? int(fields.get('mode')!, 'mode', ctx, 8) : 0o400,
        uid: fields.has('uid') ? int(fields.get('uid')!, 'uid', ctx) : 0,
        gid: fields.has('gid') ? int(fields.get('gid')!, 'gid', ctx) : 0,
      };
    }
    case 'ssh':
      throw new StrataError('UNSUPPORTED', `--mount=type=ssh is not supported by strata yet`, {
        position: ctx.position,
        hint: 'use a secret mount for keys, or fetch private sources before the build',
      });
    default:
      throw new StrataError('BAD_MOUNT', `--mount: unknown mount type "${type}"`, {
        position: ctx.position,
        hint: 'types are bind, cache, tmpfs and secret',
      });
  }
}

function parseSize(s: string, ctx: MountParseContext): number {
  const m = /^(\d+)([kmg]?)b?$/i.exec(s.trim());
  if (!m) throw new StrataError('BAD_MOUNT', `--mount: size=${s} is not a size`, { position: ctx.position });
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * mult;
}
