// COPY/ADD --chmod: an octal mode (0 to 07777) or a chmod(1) symbolic mode (`u+x,g-w`, `go=u-w`),
// evaluated as BuildKit does (BSD setmode with a zero umask; `X` counts only with `+`).
import { StrataError } from '../errors.js';

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISTXT = 0o1000;
const STANDARD = S_ISUID | S_ISGID | 0o777;
const ALL = 0xffff;

const COPY_U = 1;
const COPY_G = 2;
const COPY_O = 4;
const COPY_SET = 8;
const COPY_CLEAR = 16;

type Cmd =
  | { op: '+' | '-' | 'X'; bits: number }
  | { op: 'u' | 'g' | 'o'; bits: number; flags: number };

export interface Chmod {
  /** The text as given, for messages and cache keys. */
  text: string;
  /** Set when the mode is octal: created parent dirs then get its permission bits. */
  octal?: number;
  /** The mode a copied file or dir gets, from its source mode (permission and special bits). */
  apply(mode: number, isDir: boolean): number;
}

function invalid(text: string): StrataError {
  return new StrataError('COPY_BAD_CHMOD', `invalid chmod parameter: '${text}'. it should be octal string and between 0 and 07777`, {
    hint: 'Use an octal mode such as --chmod=755, or a symbolic one such as --chmod=u+x,g-w.',
  });
}

function syntax(text: string): StrataError {
  return new StrataError('COPY_BAD_CHMOD', `invalid chmod parameter: '${text}': invalid syntax`, {
    hint: 'Symbolic modes look like chmod(1): [ugoa]*[+-=][rwxXst]* or [ugoa]*[+-=][ugo], joined by commas (u+x,go-w).',
  });
}

function addCmd(cmds: Cmd[], op: string, who: number, arg: number | string): void {
  if (op === '=') {
    cmds.push({ op: '-', bits: who !== 0 ? who : STANDARD });
    op = '+';
  }
  if (op === '+' || op === '-' || op === 'X') {
    cmds.push({ op, bits: who !== 0 ? who & (arg as number) : (arg as number) });
    return;
  }
  let flags = 0;
  let bits = ALL;
  if (who !== 0) {
    if (who & 0o400) flags |= COPY_U;
    if (who & 0o040) flags |= COPY_G;
    if (who & 0o004) flags |= COPY_O;
  } else {
    flags = COPY_U | COPY_G | COPY_O;
    bits = ALL;
  }
  if (arg === '+') flags |= COPY_SET;
  else if (arg === '-') flags |= COPY_CLEAR;
  else flags |= COPY_SET | COPY_CLEAR;
  cmds.push({ op: op as 'u' | 'g' | 'o', bits, flags });
}

function parseSymbolic(text: string): Cmd[] {
  const cmds: Cmd[] = [];
  let s = text;
  let equalOpDone = false;
  for (;;) {
    let who = 0;
    for (;;) {
      if (s.length === 0) throw syntax(text);
      const c = s[0];
      if (c === 'a') who |= STANDARD;
      else if (c === 'u') who |= S_ISUID | 0o700;
      else if (c === 'g') who |= S_ISGID | 0o070;
      else if (c === 'o') who |= 0o007;
      else break;
      s = s.slice(1);
    }
    for (;;) {
      if (s.length === 0) throw syntax(text);
      const op = s[0];
      s = s.slice(1);
      if (op === '=') equalOpDone = false;
      else if (op !== '+' && op !== '-') throw syntax(text);
      who &= ~S_ISTXT;
      let perm = 0;
      let permX = 0;
      for (;; s = s.slice(1)) {
        const b = s.length > 0 ? s[0] : '';
        if (b === 'r') perm |= 0o444;
        else if (b === 'w') perm |= 0o222;
        else if (b === 'x') perm |= 0o111;
        else if (b === 'X') {
          if (op === '+') permX = 0o111;
        } else if (b === 's') {
          if (who === 0 || (who & ~0o007) !== 0) perm |= S_ISUID | S_ISGID;
        } else if (b === 't') {
          if (who === 0 || (who & ~0o007) !== 0) {
            who |= S_ISTXT;
            perm |= S_ISTXT;
          }
        } else if (b === 'u' || b === 'g' || b === 'o') {
          if (perm !== 0) {
            addCmd(cmds, op, who, perm);
            perm = 0;
          }
          if (op === '=') equalOpDone = true;
          if (permX !== 0) {
            addCmd(cmds, 'X', who, permX);
            permX = 0;
          }
          addCmd(cmds, b, who, op);
        } else {
          if (perm !== 0 || (op === '=' && !equalOpDone)) {
            if (op === '=') equalOpDone = true;
            addCmd(cmds, op, who, perm);
          }
          if (permX !== 0) addCmd(cmds, 'X', who, permX);
          break;
        }
      }
      if (s.length === 0 || s[0] === ',') break;
    }
    if (s.length === 0) break;
    s = s.slice(1);
  }
  return cmds;
}

function applyCmds(cmds: Cmd[], mode: number, isDir: boolean): number {
  const old = mode & 0o7777;
  let m = old;
  const copy = (c: { bits: number; flags: number }, value: number): void => {
    if (c.flags & COPY_CLEAR) {
      const clr = c.flags & COPY_SET ? 0o007 : value;
      if (c.flags & COPY_U) m &= ~((clr << 6) & c.bits);
      if (c.flags & COPY_G) m &= ~((clr << 3) & c.bits);
      if (c.flags & COPY_O) m &= ~(clr & c.bits);
    }
    if (c.flags & COPY_SET) {
      if (c.flags & COPY_U) m |= (value << 6) & c.bits;
      if (c.flags & COPY_G) m |= (value << 3) & c.bits;
      if (c.flags & COPY_O) m |= value & c.bits;
    }
  };
  for (const c of cmds) {
    switch (c.op) {
      case 'u':
        copy(c, (m & 0o700) >> 6);
        break;
      case 'g':
        copy(c, (m & 0o070) >> 3);
        break;
      case 'o':
        copy(c, m & 0o007);
        break;
      case '+':
        m |= c.bits;
        break;
      case '-':
        m &= ~c.bits;
        break;
      case 'X':
        if ((old & 0o111) !== 0 || isDir) m |= c.bits;
        break;
    }
  }
  return m & 0o7777;
}

/** Parse a --chmod value; throws COPY_BAD_CHMOD with BuildKit's wording when it is invalid. */
export function parseChmod(text: string): Chmod {
  if (text.length > 0 && text[0] >= '0' && text[0] <= '9') {
    if (!/^[0-7]+$/.test(text)) throw invalid(text);
    const n = parseInt(text, 8);
    if (n > 0o7777) throw invalid(text);
    return { text, octal: n, apply: () => n };
  }
  const cmds = parseSymbolic(text);
  return { text, apply: (mode, isDir) => applyCmds(cmds, mode, isDir) };
}
