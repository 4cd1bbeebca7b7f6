// Parsed lines to typed instructions, checking arguments and flags as BuildKit's
// frontend/dockerfile/instructions package does (same messages), plus strata's `--cache-ttl`.
// Words stay unexpanded: the frontend expands them with the ARG/ENV scope in force.
import { StrataError } from '../errors.js';
import type { ParsedDockerfile, RawInstruction } from './ast.js';
import { encodeUtf8, equalFold, fromByteString, goToLower, goToUpper, rawStringToBuffer, trimSpace } from './bytes.js';
import { BFlags, FlagError } from './flags.js';
import { DurationError, parseCacheTtl, parseGoDuration } from './go-duration.js';
import { goQuote } from './go-quote.js';
import { parseHeredocWord } from './heredoc.js';
import type {
  ArgInstruction,
  CommandLine,
  CopyInstruction,
  EnvInstruction,
  FromInstruction,
  HealthcheckInstruction,
  Instruction,
  KeyValue,
  RunInstruction,
} from './instructions-types.js';
import { withSuggestion } from './suggest.js';

/** A problem with one instruction; toInstruction adds the position. */
class InstructionError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

const INSTRUCTION_NAMES = [
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK',
  'LABEL', 'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
];

const VALID_STAGE_NAME = /^[a-z][a-z0-9\-_.]*$/;
const CACHE_TTL_COMMENT = /^(?:#[\t ]*)?strata:cache-ttl[\t ]*=[\t ]*(\S+)[\t ]*$/;
const ONBUILD_PREFIX = /^[\t\n\f\r ]*onbuild[\t\n\f\r ]*/i;

// Go string functions on ordinary strings (they may carry raw bytes, see bytes.ts).
const lower = (s: string): string => fromByteString(goToLower(encodeUtf8(s)));
const upper = (s: string): string => fromByteString(goToUpper(encodeUtf8(s)));
const trim = (s: string): string => fromByteString(trimSpace(encodeUtf8(s)));

function isHeredocWord(word: string): boolean {
  try {
    return parseHeredocWord(encodeUtf8(word)) !== null;
  } catch {
    return false; // MustParseHeredoc: a lexing error means "not a heredoc"
  }
}

/** BuildKit's handleJSONArgs: exec form as is, shell form joined into one string. */
function commandLine(ins: RawInstruction, args: string[]): CommandLine {
  if (args.length === 0) return { args: [], shellForm: !ins.json };
  if (ins.json) return { args, shellForm: false };
  return { args: [args.join(' ')], shellForm: true };
}

function exactlyOne(ins: RawInstruction, name: string): string {
  if (ins.args.length !== 1) throw new InstructionError(`${name} requires exactly one argument`);
  return ins.args[0]!;
}

function atLeastOne(ins: RawInstruction, name: string): void {
  if (ins.args.length === 0) throw new InstructionError(`${name} requires at least one argument`);
}

function cacheTtl(ins: RawInstruction, flags: BFlags): string | undefined {
  let ttl = flags.get('cache-ttl');
  let from = '--cache-ttl';
  if (ttl === undefined) {
    for (const c of ins.comments ?? []) {
      const m = CACHE_TTL_COMMENT.exec(c);
      if (m) {
        ttl = m[1];
        from = '# strata:cache-ttl';
      }
    }
  }
  if (ttl === undefined) return undefined;
  try {
    parseCacheTtl(ttl);
  } catch (e) {
    if (e instanceof DurationError) {
      throw new InstructionError(`invalid ${from} value ${goQuote(ttl)}: ${e.message}`, 'use a positive duration such as 30m, 24h or 7d');
    }
    throw e;
  }
  return ttl;
}

function parseKvps(ins: RawInstruction, name: string): { pairs: Required<KeyValue>[]; legacy: boolean } {
  const args = ins.args;
  if (args.length === 0) throw new InstructionError(`${name} requires at least one argument`);
  if (args.length % 3 !== 0) throw new InstructionError(`Bad input to ${name}, too many arguments`);
  const pairs: Required<KeyValue>[] = [];
  let legacy = false;
  for (let j = 0; j < args.length; j += 3) {
    if (args[j]!.length === 0) throw new InstructionError(`${name} names can not be blank`);
    pairs.push({ key: args[j]!, value: args[j + 1]! });
    if (args[j + 2] === '') legacy = true;
  }
  return { pairs, legacy };
}

/** BuildKit's parse-time look at a `--mount` value (most checks need the expanded value and come later). */
function checkMount(value: string): void {
  const fields = splitCsv(value);
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      if (['readonly', 'ro', 'readwrite', 'rw', 'required'].includes(key)) continue;
      throw new InstructionError(`invalid field '${field}' must be a key=value pair`);
    }
    const v = field.slice(eq + 1);
    if (key === 'from') {
      const idx = v.indexOf('$');
      if (idx !== -1 && idx !== v.length - 1) {
        throw new InstructionError(`'${key}' doesn't support variable expansion, define alias stage instead`);
      }
    }
  }
}

/** One CSV record (encoding/csv rules: `"` quotes a whole field, `""` inside it is a quote). */
export function splitCsv(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw new InstructionError(`failed to parse csv mounts: extraneous or missing " in quoted-field`);
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += s[i];
        i++;
      }
      if (i < s.length && s[i] !== ',') throw new InstructionError(`failed to parse csv mounts: extraneous or missing " in quoted-field`);
    } else {
      while (i < s.length && s[i] !== ',') {
        if (s[i] === '"') throw new InstructionError(`failed to parse csv mounts: bare " in non-quoted-field`);
        field += s[i];
        i++;
      }
    }
    out.push(field);
    if (i >= s.length) return out;
    i++; // the comma
  }
}

function parseFrom(ins: RawInstruction): FromInstruction {
  const args = ins.args;
  let stageName: string | undefined;
  if (args.length === 3 && equalFold(encodeUtf8(args[1]!), 'as')) {
    stageName = lower(args[2]!);
    if (!VALID_STAGE_NAME.test(stageName)) {
      throw new InstructionError(
        `invalid name for build stage: ${goQuote(args[2]!)}, name can't start with a number or contain symbols`,
        'stage names are lower-case letters, digits, -, _ and ., starting with a letter',
      );
    }
  } else if (args.length !== 1) {
    throw new InstructionError('FROM requires either one or three arguments', 'write FROM IMAGE or FROM IMAGE AS NAME');
  }
  const flags = new BFlags(ins.flags).string('platform').parse();
  const out: FromInstruction = { kind: 'from', ...base(ins), image: args[0]! };
  if (stageName !== undefined) out.stageName = stageName;
  const platform = flags.get('platform');
  if (platform !== undefined && platform !== '') out.platform = platform;
  return out;
}

function parseCopy(ins: RawInstruction, kind: 'copy' | 'add'): CopyInstruction {
  const NAME = kind.toUpperCase();
  if (ins.args.length < 2) {
    throw new InstructionError(
      `${NAME} requires at least two arguments, but only one was provided. Destination could not be determined`,
      `write ${NAME} SOURCE... DEST`,
    );
  }
  const flags = new BFlags(ins.flags).string('chown').string('chmod').bool('link');
  if (kind === 'add') flags.bool('keep-git-dir').string('checksum').bool('unpack').strings('exclude');
  else flags.string('from').strings('exclude').bool('parents');
  flags.string('cache-ttl').parse();
  const dest = ins.args[ins.args.length - 1]!;
  if (isHeredocWord(dest)) throw new InstructionError(`${NAME} cannot accept a heredoc as a destination`);
  const out: CopyInstruction = {
    kind,
    ...base(ins),
    sources: ins.args.slice(0, -1),
    dest,
    heredocs: ins.heredocs,
    link: flags.isTrue('link'),
    parents: kind === 'copy' ? flags.isTrue('parents') : false,
    excludes: flags.values('exclude'),
  };
  const set = (key: 'from' | 'chown' | 'chmod' | 'checksum', flag: string): void => {
    const v = flags.value(flag);
    if (v !== '') out[key] = v;
  };
  if (kind === 'copy') set('from', 'from');
  set('chown', 'chown');
  set('chmod', 'chmod');
  if (kind === 'add') {
    set('checksum', 'checksum');
    if (flags.used('keep-git-dir')) out.keepGitDir = flags.isTrue('keep-git-dir');
    if (flags.used('unpack')) out.unpack = flags.isTrue('unpack');
  }
  const ttl = cacheTtl(ins, flags);
  if (ttl !== undefined) out.cacheTtl = ttl;
  return out;
}

function parseRun(ins: RawInstruction): RunInstruction {
  const flags = new BFlags(ins.flags)
    .strings('mount')
    .string('network', 'default')
    .string('security', 'sandbox')
    .strings('device')
    .string('cache-ttl')
    .parse();
  const out: RunInstruction = {
    kind: 'run',
    ...base(ins),
    command: commandLine(ins, ins.args),
    heredocs: ins.heredocs,
    mounts: flags.values('mount'),
  };
  const devices = flags.values('device');
  if (devices.length > 0) out.devices = devices;
  for (const m of out.mounts) checkMount(m);
  const network = flags.value('network');
  if (!['default', 'none', 'host'].includes(network)) {
    throw new InstructionError(`invalid network mode ${goQuote(network)}`, 'use --network=default, none or host');
  }
  if (flags.used('network')) out.network = network;
  const security = flags.value('security');
  if (!['insecure', 'sandbox'].includes(security)) {
    throw new InstructionError(`security ${goQuote(security)} is not valid`, 'use --security=sandbox or insecure');
  }
  if (flags.used('security')) out.security = security;
  const ttl = cacheTtl(ins, flags);
  if (ttl !== undefined) out.cacheTtl = ttl;
  return out;
}

/** Go's strconv.ParseInt(s, 10, 32) with its messages. */
function parseInt32(s: string): number {
  const fn = 'strconv.ParseInt';
  if (!/^[+-]?[0-9]+$/.test(s)) throw new InstructionError(`${fn}: parsing ${goQuote(s)}: invalid syntax`);
  const n = BigInt(s);
  if (n > 2147483647n || n < -2147483648n) throw new InstructionError(`${fn}: parsing ${goQuote(s)}: value out of range`);
  return Number(n);
}

function checkInterval(flags: BFlags, name: string): string | undefined {
  const v = flags.value(name);
  if (v === '') return undefined;
  let d: bigint;
  try {
    d = parseGoDuration(v);
  } catch (e) {
    if (e instanceof DurationError) throw new InstructionError(e.message, 'use a duration such as 30s, 5m or 1h');
    throw e;
  }
  if (d !== 0n && d < 1000000n) throw new InstructionError(`Interval ${goQuote(name)} cannot be less than 1ms`);
  return v;
}

function parseHealthcheck(ins: RawInstruction): HealthcheckInstruction {
  atLeastOne(ins, 'HEALTHCHECK');
  const typ = upper(ins.args[0]!);
  const rest = ins.args.slice(1);
  if (typ === 'NONE') {
    if (rest.length !== 0) throw new InstructionError('HEALTHCHECK NONE takes no arguments');
    return { kind: 'healthcheck', ...base(ins), test: ['NONE'] };
  }
  const flags = new BFlags(ins.flags)
    .string('interval')
    .string('timeout')
    .string('start-period')
    .string('start-interval')
    .string('retries')
    .parse();
  if (typ !== 'CMD') throw new InstructionError(`Unknown type ${goQuote(typ)} in HEALTHCHECK (try CMD)`, 'write HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE');
  const cmd = commandLine(ins, rest);
  if (cmd.args.length === 0) throw new InstructionError('Missing command after HEALTHCHECK CMD');
  const out: HealthcheckInstruction = { kind: 'healthcheck', ...base(ins), test: [ins.json ? 'CMD' : 'CMD-SHELL', ...cmd.args] };
  const interval = checkInterval(flags, 'interval');
  const timeout = checkInterval(flags, 'timeout');
  const startPeriod = checkInterval(flags, 'start-period');
  const startInterval = checkInterval(flags, 'start-interval');
  if (interval !== undefined) out.interval = interval;
  if (timeout !== undefined) out.timeout = timeout;
  if (startPeriod !== undefined) out.startPeriod = startPeriod;
  if (startInterval !== undefined) out.startInterval = startInterval;
  const retries = flags.value('retries');
  if (retries !== '') {
    const n = parseInt32(retries);
    if (n < 0) throw new InstructionError(`--retries cannot be negative (${n})`);
    out.retries = n;
  }
  return out;
}

function parseOnbuild(ins: RawInstruction): Instruction {
  if (!ins.nested) throw new InstructionError('ONBUILD requires at least one argument', 'write ONBUILD INSTRUCTION ARGS...');
  new BFlags(ins.flags).parse();
  const trigger = upper(trim(ins.nested.rawKeyword ?? ins.nested.keyword));
  if (trigger === 'ONBUILD') throw new InstructionError('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
  if (trigger === 'MAINTAINER' || trigger === 'FROM') throw new InstructionError(`${trigger} isn't allowed as an ONBUILD trigger`);
  let expression = ins.original.replace(ONBUILD_PREFIX, '');
  for (const h of ins.heredocs) expression += '\n' + (h.rawContent ?? h.content) + h.name;
  return { kind: 'onbuild', ...base(ins), expression };
}

function parseArg(ins: RawInstruction): ArgInstruction {
  atLeastOne(ins, 'ARG');
  const args: KeyValue[] = ins.args.map((a) => {
    const eq = a.indexOf('=');
    if (eq < 0) return { key: a };
    if (eq === 0) throw new InstructionError('ARG names can not be blank');
    return { key: a.slice(0, eq), value: a.slice(eq + 1) };
  });
  return { kind: 'arg', ...base(ins), args };
}

function parseEnv(ins: RawInstruction, kind: 'env' | 'label'): EnvInstruction {
  new BFlags(ins.flags).parse();
  const { pairs, legacy } = parseKvps(ins, kind.toUpperCase());
  const out: EnvInstruction = { kind, ...base(ins), pairs };
  if (legacy) out.legacy = true;
  return out;
}

function base(ins: RawInstruction): { original: string; startLine: number; endLine: number } {
  return { original: ins.original, startLine: ins.startLine, endLine: ins.endLine };
}

function convert(ins: RawInstruction): Instruction {
  switch (ins.keyword) {
    case 'from':
      return parseFrom(ins);
    case 'arg':
      return parseArg(ins);
    case 'env':
    case 'label':
      return parseEnv(ins, ins.keyword);
    case 'run':
      return parseRun(ins);
    case 'copy':
    case 'add':
      return parseCopy(ins, ins.keyword);
    case 'cmd':
    case 'entrypoint':
      new BFlags(ins.flags).parse();
      return { kind: ins.keyword, ...base(ins), command: commandLine(ins, ins.args) };
    case 'shell': {
      new BFlags(ins.flags).parse();
      if (ins.args.length === 0) throw new InstructionError('SHELL requires at least one argument');
      if (!ins.json) {
        throw new InstructionError('SHELL requires the arguments to be in JSON form', 'write SHELL ["executable", "parameters"]');
      }
      return { kind: 'shell', ...base(ins), shell: ins.args };
    }
    case 'workdir': {
      const path = exactlyOne(ins, 'WORKDIR');
      new BFlags(ins.flags).parse();
      return { kind: 'workdir', ...base(ins), path };
    }
    case 'user': {
      const user = exactlyOne(ins, 'USER');
      new BFlags(ins.flags).parse();
      return { kind: 'user', ...base(ins), user };
    }
    case 'maintainer': {
      const name = exactlyOne(ins, 'MAINTAINER');
      new BFlags(ins.flags).parse();
      return { kind: 'maintainer', ...base(ins), name };
    }
    case 'expose': {
      atLeastOne(ins, 'EXPOSE');
      new BFlags(ins.flags).parse();
      // Go's slices.Sort compares bytes.
      const ports = [...ins.args].sort((a, b) => Buffer.compare(rawStringToBuffer(a), rawStringToBuffer(b)));
      return { kind: 'expose', ...base(ins), ports };
    }
    case 'volume': {
      atLeastOne(ins, 'VOLUME');
      new BFlags(ins.flags).parse();
      const paths = ins.args.map((v) => {
        const t = trim(v);
        if (t === '') throw new InstructionError('VOLUME specified can not be an empty string');
        return t;
      });
      return { kind: 'volume', ...base(ins), paths };
    }
    case 'stopsignal':
      return { kind: 'stopsignal', ...base(ins), signal: exactlyOne(ins, 'STOPSIGNAL') };
    case 'healthcheck':
      return parseHealthcheck(ins);
    case 'onbuild':
      return parseOnbuild(ins);
    default: {
      const written = ins.rawKeyword ?? ins.keyword;
      throw new InstructionError(
        withSuggestion(`unknown instruction: ${written}`, written, INSTRUCTION_NAMES, false),
        'check the spelling; Dockerfile instructions are FROM, RUN, COPY, ADD, ENV, ARG, ...',
      );
    }
  }
}

/** One parsed line to its typed instruction; throws StrataError (DOCKERFILE_INSTRUCTION) with its position. */
export function toInstruction(ins: RawInstruction, file = 'Dockerfile'): Instruction {
  try {
    return convert(ins);
  } catch (e) {
    if (e instanceof InstructionError || e instanceof FlagError) {
      const position = ins.endLine > ins.startLine ? { file, line: ins.startLine, endLine: ins.endLine } : { file, line: ins.startLine };
      throw new StrataError('DOCKERFILE_INSTRUCTION', e.message, {
        position,
        hint: e instanceof InstructionError ? e.hint : undefined,
      });
    }
    throw e;
  }
}

/** Every instruction of a parsed Dockerfile, typed; the first invalid one throws. */
export function toInstructions(p: ParsedDockerfile): Instruction[] {
  return p.instructions.map((ins) => toInstruction(ins, p.file));
}
