// Streams a tar file entry by entry with tar-stream: in-memory buffers and files from disk, never
// holding a layer in memory. The archive is written to a temp file and renamed when complete.
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar, { type Header } from 'tar-stream';

export interface TarWriter {
  addDirectory(name: string): Promise<void>;
  addBuffer(name: string, data: Buffer): Promise<void>;
  addFile(name: string, path: string, size: number): Promise<void>;
  /** A stream whose length is known up front (tar headers carry sizes). */
  addStream(name: string, stream: Readable, size: number): Promise<void>;
  /** Finishes the archive and moves it into place. */
  finish(): Promise<void>;
  /** Drops the partial archive. */
  abort(): Promise<void>;
}

export function createTarWriter(file: string, mtime: Date): TarWriter {
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  const pack = tar.pack();
  const out = createWriteStream(tmp);
  const done = pipeline(pack, out);
  // Surface write errors (disk full) on the next call rather than as an unhandled rejection.
  let failure: unknown;
  done.catch((e: unknown) => { failure = e; });

  const entry = (header: Partial<Header> & { name: string }, body?: Buffer): Promise<void> => new Promise((resolve, reject) => {
    if (failure) { reject(failure); return; }
    pack.entry(header, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
  });

  const streamEntry = async (name: string, stream: Readable, size: number): Promise<void> => {
    if (failure) throw failure;
    let cb: Promise<void> | undefined;
    const sink = await new Promise<NodeJS.WritableStream>((resolve) => {
      cb = new Promise<void>((res, rej) => {
        resolve(pack.entry({ name, size, mode: 0o644, mtime, uid: 0, gid: 0, type: 'file' }, (err) => (err ? rej(err) : res())));
      });
    });
    await Promise.all([pipeline(stream, sink), cb]);
  };

  return {
    addDirectory: (name) => entry({ name: name.endsWith('/') ? name : `${name}/`, type: 'directory', mode: 0o755, mtime, uid: 0, gid: 0 }),
    addBuffer: (name, data) => entry({ name, size: data.length, type: 'file', mode: 0o644, mtime, uid: 0, gid: 0 }, data),
    addFile: (name, path, size) => streamEntry(name, createReadStream(path), size),
    addStream: streamEntry,
    async finish() {
      pack.finalize();
      await done;
      await rename(tmp, file);
    },
    async abort() {
      pack.destroy();
      await done.catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    },
  };
}
