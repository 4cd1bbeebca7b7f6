// A streaming tar reader: headers are decoded (pax and GNU long-name records folded in), file
// bodies are handed out as slices of the input without copying.
import {
  BLOCK,
  TarFormatError,
  decodeHeader,
  decodePax,
  HEADER_ONLY,
  isZeroBlock,
  padding,
  typeFromFlag,
  type TarHeader,
} from './tar-format.js';

/** Pulls exact byte counts out of an async iterable of chunks. */
class ByteSource {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private readonly it: AsyncIterator<Buffer | string>;

  constructor(src: AsyncIterable<Buffer | string>) {
    this.it = src[Symbol.asyncIterator]();
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.it.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value, 'latin1') : r.value;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    return true;
  }

  /** Exactly n bytes, or fewer only at the end of the input. */
  async read(n: number): Promise<Buffer> {
    while (this.buffered < n && (await this.pull()));
    const take = Math.min(n, this.buffered);
    const parts: Buffer[] = [];
    let need = take;
    while (need > 0) {
      const head = this.chunks[0]!;
      if (head.length <= need) {
        parts.push(head);
        this.chunks.shift();
        need -= head.length;
      } else {
        parts.push(head.subarray(0, need));
        this.chunks[0] = head.subarray(need);
        need = 0;
      }
    }
    this.buffered -= take;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, take);
  }

  /** The next chunk of at most n bytes; empty at the end of the input. */
  async next(n: number): Promise<Buffer> {
    if (this.buffered === 0 && !(await this.pullNonEmpty())) return Buffer.alloc(0);
    const head = this.chunks[0]!;
    if (head.length <= n) {
      this.chunks.shift();
      this.buffered -= head.length;
      return head;
    }
    this.chunks[0] = head.subarray(n);
    this.buffered -= n;
    return head.subarray(0, n);
  }

  private async pullNonEmpty(): Promise<boolean> {
    while (this.buffered === 0) if (!(await this.pull())) return false;
    return true;
  }

  async skip(n: number): Promise<void> {
    while (n > 0) {
      const c = await this.next(n);
      if (c.length === 0) throw new TarFormatError('unexpected end of archive');
      n -= c.length;
    }
  }

  /** Consumes whatever is left (the zero padding after the end marker still counts for digests). */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (await this.pull()) {
      this.chunks = [];
      this.buffered = 0;
    }
  }
}

export interface TarEntry {
  header: TarHeader;
  /** The body of a regular file, in order; read it fully or not at all before the next entry. */
  body(): AsyncGenerator<Buffer>;
}

const MAX_META = 1 << 20; // a pax or long-name record larger than this is not a real archive


function num(value: Buffer | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  const text = value.toString('latin1');
  if (!/^-?\d+(\.\d+)?$/.test(text)) throw new TarFormatError(`bad pax ${what} ${JSON.stringify(text)}`);
  return Number(text);
}

export async function* readTar(src: AsyncIterable<Buffer | string>): AsyncGenerator<TarEntry> {
  const source = new ByteSource(src);
  let globalPax = new Map<string, Buffer>();
  let pax: Map<string, Buffer> | null = null;
  let longName: string | null = null;
  let longLink: string | null = null;

  for (;;) {
    const block = await source.read(BLOCK);
    if (block.length === 0) break; // archives without the end marker are accepted, as Go does
    if (block.length < BLOCK) throw new TarFormatError('unexpected end of archive');
    if (isZeroBlock(block)) {
      await source.drain();
      break;
    }
    const raw = decodeHeader(block);
    const dataSize = HEADER_ONLY.has(raw.typeflag) ? 0 : raw.size;
    if (dataSize < 0) throw new TarFormatError('negative size');

    if (raw.typeflag === 'x' || raw.typeflag === 'X' || raw.typeflag === 'g' || raw.typeflag === 'L' || raw.typeflag === 'K') {
      if (dataSize > MAX_META) throw new TarFormatError(`extended header of ${dataSize} bytes`);
      const data = await source.read(dataSize);
      if (data.length < dataSize) throw new TarFormatError('unexpected end of archive');
      await source.skip(padding(dataSize));
      if (raw.typeflag === 'g') globalPax = new Map([...globalPax, ...decodePax(data)]);
      else if (raw.typeflag === 'L' || raw.typeflag === 'K') {
        const end = data.indexOf(0);
        const value = data.toString('latin1', 0, end === -1 ? data.length : end);
        if (raw.typeflag === 'L') longName = value;
        else longLink = value;
      } else pax = new Map([...(pax ?? []), ...decodePax(data)]);
      continue;
    }
    if (raw.typeflag === 'S') throw new TarFormatError('GNU sparse files are not supported');

    const records = new Map([...globalPax, ...(pax ?? [])]);
    pax = null;
    for (const key of records.keys()) {
      if (key.startsWith('GNU.sparse.')) throw new TarFormatError('sparse files are not supported');
    }
    let name = longName ?? raw.name;
    let linkname = longLink ?? raw.linkname;
    longName = longLink = null;
    // pax path/linkpath are UTF-8; kept as raw bytes like every other name
    const paxPath = records.get('path');
    if (paxPath) name = paxPath.toString('latin1');
    const paxLink = records.get('linkpath');
    if (paxLink) linkname = paxLink.toString('latin1');

    const type = typeFromFlag(raw.typeflag, name);
    if (type === null) throw new TarFormatError(`unsupported entry type ${JSON.stringify(raw.typeflag)} for ${JSON.stringify(name)}`);
    const size = num(records.get('size'), 'size') ?? dataSize;
    const bodySize = HEADER_ONLY.has(raw.typeflag) ? 0 : size;

    const xattrs = new Map<string, Buffer>();
    for (const [key, value] of records) {
      if (key.startsWith('SCHILY.xattr.')) xattrs.set(key.slice('SCHILY.xattr.'.length), value);
    }
    const header: TarHeader = {
      name,
      type,
      mode: raw.mode,
      uid: num(records.get('uid'), 'uid') ?? raw.uid,
      gid: num(records.get('gid'), 'gid') ?? raw.gid,
      size: type === 'file' ? bodySize : 0,
      mtime: num(records.get('mtime'), 'mtime') ?? raw.mtime,
      linkname,
      devmajor: raw.devmajor,
      devminor: raw.devminor,
      xattrs,
    };

    let remaining = bodySize;
    const body = async function* (): AsyncGenerator<Buffer> {
      while (remaining > 0) {
        const chunk = await source.next(remaining);
        if (chunk.length === 0) throw new TarFormatError(`unexpected end of archive inside ${JSON.stringify(name)}`);
        remaining -= chunk.length;
        yield chunk;
      }
    };
    yield { header, body };
    if (remaining > 0) await source.skip(remaining);
    remaining = 0;
    await source.skip(padding(bodySize));
  }
}
