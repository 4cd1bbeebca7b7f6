// The bytes of a tar archive: 512-byte ustar headers, pax extended records, GNU long names.
// Written by hand instead of using tar-stream because tar-stream decodes pax values as UTF-8
// (binary xattrs such as security.capability would be mangled) and writes non-deterministic
// pax headers. Paths are "binary strings" (latin1: one char per byte) so that names which are
// not UTF-8 pass through unchanged; bytewise order is then plain string order.

export const BLOCK = 512;

export type EntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  name: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** seconds since the epoch; may be fractional (pax mtime) */
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** SCHILY.xattr.* records, name -> raw value */
  xattrs: Map<string, Buffer>;
}

/** A header record as read, before pax/GNU records are folded in. */
export interface RawHeader {
  typeflag: string;
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
}

/** Types whose size field never announces data blocks (Go's archive/tar does the same). */
export const HEADER_ONLY: ReadonlySet<string> = new Set(['1', '2', '3', '4', '5', '6']);

export class TarFormatError extends Error {}

const USTAR_MAGIC = Buffer.from('ustar\u000000', 'latin1');
const GNU_MAGIC = Buffer.from('ustar  \u0000', 'latin1');

/** A NUL-terminated field (or one that fills its `len` bytes), as a binary string. */
export function cstring(buf: Buffer, off: number, len: number): string {
  let end = off;
  while (end < off + len && buf[end] !== 0) end++;
  return buf.toString('latin1', off, end);
}

/**
 * A numeric header field: octal digits between optional NULs and spaces (empty is 0), or
 * base-256. Read byte by byte: this runs for several fields of every entry of every layer.
 */
export function parseNumeric(buf: Buffer, off: number, len: number): number {
  const first = buf[off]!;
  if (first & 0x80) {
    // base-256, the GNU/star extension for values that do not fit in octal
    let value = 0;
    if (first === 0xff) {
      for (let i = 0; i < len; i++) value = value * 256 + (0xff - buf[off + i]!);
      return -(value + 1);
    }
    value = first & 0x7f;
    for (let i = 1; i < len; i++) value = value * 256 + buf[off + i]!;
    return value;
  }
  const end = off + len;
  let i = off;
  while (i < end && (buf[i] === 0 || buf[i] === 0x20)) i++;
  let value = 0;
  for (; i < end && buf[i]! >= 0x30 && buf[i]! <= 0x37; i++) value = value * 8 + (buf[i]! - 0x30);
  while (i < end && (buf[i] === 0 || buf[i] === 0x20)) i++;
  if (i < end) {
    const text = buf.toString('latin1', off, end).replace(/[\0 ]+$/g, '').replace(/^[ \0]+/g, '');
    throw new TarFormatError(`bad numeric field ${JSON.stringify(text)}`);
  }
  return value;
}

function checksumOk(block: Buffer): boolean {
  const stored = parseNumeric(block, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

export function decodeHeader(block: Buffer): RawHeader {
  if (!checksumOk(block)) throw new TarFormatError('header checksum mismatch (not a tar stream, or corrupted)');
  const typeflag = block[156] === 0 ? '0' : String.fromCharCode(block[156]!);
  let name = cstring(block, 0, 100);
  const magic = block.subarray(257, 265);
  // The prefix field exists in POSIX ustar only; GNU tar uses those bytes for other things.
  if (magic.equals(USTAR_MAGIC) || (magic.subarray(0, 6).equals(USTAR_MAGIC.subarray(0, 6)) && !magic.equals(GNU_MAGIC))) {
    const prefix = cstring(block, 345, 155);
    if (prefix) name = `${prefix}/${name}`;
  }
  return {
    typeflag,
    name,
    mode: parseNumeric(block, 100, 8),
    uid: parseNumeric(block, 108, 8),
    gid: parseNumeric(block, 116, 8),
    size: parseNumeric(block, 124, 12),
    mtime: parseNumeric(block, 136, 12),
    linkname: cstring(block, 157, 100),
    devmajor: parseNumeric(block, 329, 8),
    devminor: parseNumeric(block, 337, 8),
  };
}

/** Pax records: `LEN KEY=VALUE\n`. Values stay raw bytes. */
export function decodePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // some writers pad with NULs
    const space = data.indexOf(0x20, pos);
    if (space === -1) throw new TarFormatError('bad pax record');
    const len = parseInt(data.toString('latin1', pos, space), 10);
    if (!Number.isSafeInteger(len) || len <= space - pos || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new TarFormatError('bad pax record length');
    }
    const record = data.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq === -1) throw new TarFormatError('bad pax record (no "=")');
    out.set(record.toString('utf8', 0, eq), Buffer.from(record.subarray(eq + 1)));
    pos += len;
  }
  return out;
}

export function typeFromFlag(flag: string, name: string): EntryType | null {
  switch (flag) {
    case '0':
    case '7': // contiguous file: a regular file everywhere that matters
      return name.endsWith('/') ? 'dir' : 'file'; // v7 tars mark directories with a trailing slash
    case '1':
      return 'link';
    case '2':
      return 'symlink';
    case '3':
      return 'char';
    case '4':
      return 'block';
    case '5':
      return 'dir';
    case '6':
      return 'fifo';
    default:
      return null;
  }
}

const FLAG: Record<EntryType, string> = { file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };

// ---------------------------------------------------------------------------------------------
// Writing

function writeString(block: Buffer, off: number, len: number, value: string): void {
  block.write(value, off, len, 'latin1');
}

function octal(value: number, digits: number): string | null {
  if (!Number.isInteger(value) || value < 0) return null;
  const s = value.toString(8);
  return s.length > digits ? null : s.padStart(digits, '0');
}

function writeOctal(block: Buffer, off: number, len: number, value: number): void {
  // `len - 1` digits and a NUL, as Go's archive/tar does; zeros when the value does not fit.
  // Digit by digit into the block: this runs several times for every entry of every layer.
  const digits = len - 1;
  let v = Number.isInteger(value) && value >= 0 && value < 8 ** digits ? value : 0;
  let i = digits - 1;
  for (; i >= 0 && v > 0x7fffffff; i--) {
    const d = v % 8;
    block[off + i] = 0x30 + d;
    v = (v - d) / 8;
  }
  for (; i >= 0; i--) {
    block[off + i] = 0x30 + (v & 7);
    v >>>= 3;
  }
  block[off + digits] = 0;
}

function splitUstarName(name: string): { prefix: string; name: string } | null {
  if (name.length <= 100) return { prefix: '', name };
  // the first '/' that leaves at most 100 bytes of name and 155 of prefix
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    if (i > 155) return null;
    if (name.length - i - 1 <= 100 && i > 0 && i < name.length - 1) return { prefix: name.slice(0, i), name: name.slice(i + 1) };
  }
  return null;
}

interface HeaderFields {
  name: string;
  prefix: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
}

/** Writes one 512-byte header block at `off` of `block` (the range need not be zeroed). */
function fillHeader(block: Buffer, off: number, h: HeaderFields): void {
  block.fill(0, off, off + BLOCK);
  if (h.name !== '') writeString(block, off, 100, h.name);
  writeOctal(block, off + 100, 8, h.mode);
  writeOctal(block, off + 108, 8, h.uid);
  writeOctal(block, off + 116, 8, h.gid);
  writeOctal(block, off + 124, 12, h.size);
  writeOctal(block, off + 136, 12, h.mtime);
  block.fill(0x20, off + 148, off + 156);
  block[off + 156] = h.typeflag.charCodeAt(0);
  if (h.linkname !== '') writeString(block, off + 157, 100, h.linkname);
  USTAR_MAGIC.copy(block, off + 257);
  writeOctal(block, off + 329, 8, h.devmajor);
  writeOctal(block, off + 337, 8, h.devminor);
  if (h.prefix !== '') writeString(block, off + 345, 155, h.prefix);
  let sum = 0;
  for (let i = off; i < off + BLOCK; i++) sum += block[i]!;
  writeOctal(block, off + 148, 7, sum);
  block[off + 155] = 0x20;
}

function headerBlock(h: HeaderFields): Buffer {
  const block = Buffer.allocUnsafe(BLOCK);
  fillHeader(block, 0, h);
  return block;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), body]);
}

function formatMtime(mtime: number): string {
  if (Number.isInteger(mtime)) return String(mtime);
  const sign = mtime < 0 ? '-' : '';
  const abs = Math.abs(mtime);
  const whole = Math.floor(abs);
  const frac = Math.round((abs - whole) * 1e9);
  return frac === 0 ? `${sign}${whole}` : `${sign}${whole}.${String(frac).padStart(9, '0').replace(/0+$/, '')}`;
}

export function padding(size: number): number {
  const rest = size % BLOCK;
  return rest === 0 ? 0 : BLOCK - rest;
}

/**
 * The header blocks (pax extended header when needed, then ustar) for one entry. The output
 * depends only on `h`: pax records are in a fixed order, xattrs sorted by name.
 */
export function encodeHeader(h: TarHeader): Buffer {
  const isDir = h.type === 'dir';
  const fullName = isDir && !h.name.endsWith('/') ? `${h.name}/` : h.name;
  const size = h.type === 'file' ? h.size : 0;
  const pax: Array<[string, Buffer]> = [];

  let split = splitUstarName(fullName);
  if (!split) {
    pax.push(['path', Buffer.from(fullName, 'latin1')]);
    split = { prefix: '', name: fullName.slice(0, 100) };
  }
  let linkname = h.linkname;
  if (Buffer.byteLength(linkname, 'latin1') > 100) {
    pax.push(['linkpath', Buffer.from(linkname, 'latin1')]);
    linkname = linkname.slice(0, 100);
  }
  let mtimeField = Math.trunc(h.mtime);
  if (!Number.isInteger(h.mtime) || octal(mtimeField, 11) === null) {
    pax.push(['mtime', Buffer.from(formatMtime(h.mtime), 'latin1')]);
    if (octal(mtimeField, 11) === null) mtimeField = 0;
  }
  const ids: Array<['uid' | 'gid', number]> = [
    ['uid', h.uid],
    ['gid', h.gid],
  ];
  for (const [key, value] of ids) if (octal(value, 7) === null) pax.push([key, Buffer.from(String(value), 'latin1')]);
  if (octal(size, 11) === null) pax.push(['size', Buffer.from(String(size), 'latin1')]);
  for (const key of [...h.xattrs.keys()].sort()) pax.push([`SCHILY.xattr.${key}`, h.xattrs.get(key)!]);

  const main = headerBlock({
    name: split.name,
    prefix: split.prefix,
    typeflag: FLAG[h.type],
    mode: h.mode & 0o7777,
    uid: octal(h.uid, 7) === null ? 0 : h.uid,
    gid: octal(h.gid, 7) === null ? 0 : h.gid,
    size: octal(size, 11) === null ? 0 : size,
    mtime: mtimeField,
    linkname,
    devmajor: h.devmajor,
    devminor: h.devminor,
  });
  if (pax.length === 0) return main;

  const records = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const base = fullName.replace(/\/+$/, '').split('/').pop() ?? '';
  const paxHeader = headerBlock({
    name: `PaxHeaders.0/${base}`.slice(0, 100),
    prefix: '',
    typeflag: 'x',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: records.length,
    mtime: 0,
    linkname: '',
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, records, Buffer.alloc(padding(records.length)), main]);
}

const MAX_OCTAL_7 = 8 ** 7;
const MAX_OCTAL_11 = 8 ** 11;

/**
 * encodeHeader's bytes written straight into `buf` at `off` when they are one plain ustar block
 * (no pax records: short names and link targets, no xattrs, whole-second times, ids and size in
 * range), which is most entries of most layers. Returns the bytes written (512), or 0 when the
 * entry needs pax records; then nothing was written and encodeHeader must be used. The caller
 * leaves room for 512 bytes.
 */
export function writeHeader(h: TarHeader, buf: Buffer, off: number): number {
  if (h.xattrs.size > 0) return 0;
  const size = h.type === 'file' ? h.size : 0;
  if (!Number.isInteger(h.mtime) || h.mtime < 0 || h.mtime >= MAX_OCTAL_11) return 0;
  if (!(h.uid >= 0 && h.uid < MAX_OCTAL_7 && Number.isInteger(h.uid)) || !(h.gid >= 0 && h.gid < MAX_OCTAL_7 && Number.isInteger(h.gid))) return 0;
  if (!(size >= 0 && size < MAX_OCTAL_11 && Number.isInteger(size))) return 0;
  if (h.linkname.length > 100) return 0;
  const fullName = h.type === 'dir' && !h.name.endsWith('/') ? `${h.name}/` : h.name;
  const split = splitUstarName(fullName);
  if (!split) return 0;
  fillHeader(buf, off, {
    name: split.name,
    prefix: split.prefix,
    typeflag: FLAG[h.type],
    mode: h.mode & 0o7777,
    uid: h.uid,
    gid: h.gid,
    size,
    mtime: h.mtime,
    linkname: h.linkname,
    devmajor: h.devmajor,
    devminor: h.devminor,
  });
  return BLOCK;
}

/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
