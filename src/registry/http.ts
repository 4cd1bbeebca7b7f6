// HTTP(S) for the registry client on node:http and node:https. Node's global fetch loads undici
// (~28 ms) on first use, which a fully cached build paid for its one base-tag HEAD; these modules
// are part of Node's snapshot. Keep-alive agents carry a build's many small requests on a few
// connections; GET and HEAD follow redirects (registries send blob downloads to storage
// elsewhere), dropping the Authorization header when the redirect leaves the origin.
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Sent as is; a stream needs a Content-Length header or it goes chunked. */
  body?: Buffer | Readable;
  /** Redirects to follow for GET and HEAD (never for other methods). */
  maxRedirects?: number;
  /** Idle time on the socket (connecting, waiting, or between chunks) before giving up. */
  idleTimeoutMs?: number;
}

export class HttpResponse {
  constructor(
    readonly status: number,
    readonly statusText: string,
    private readonly rawHeaders: IncomingHttpHeaders,
    readonly body: IncomingMessage,
    /** The URL that answered, after redirects. */
    readonly url: string,
  ) {}

  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  header(name: string): string | undefined {
    const v = this.rawHeaders[name.toLowerCase()];
    return Array.isArray(v) ? v.join(', ') : v;
  }

  /** The whole body; fails past `maxBytes` (a body that large is not what we asked for). */
  async buffer(maxBytes = 64 * 1024 * 1024): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of this.body) {
      n += (c as Buffer).length;
      if (n > maxBytes) {
        this.body.destroy();
        throw new BodyTooLarge(maxBytes);
      }
      chunks.push(c as Buffer);
    }
    return Buffer.concat(chunks, n);
  }

  async text(maxBytes?: number): Promise<string> {
    return (await this.buffer(maxBytes)).toString('utf8');
  }

  async json<T>(maxBytes?: number): Promise<T> {
    return JSON.parse(await this.text(maxBytes)) as T;
  }

  /** Drops the body; a fully read response gives its connection back to the pool. */
  async discard(): Promise<void> {
    if (this.body.readableEnded || this.body.destroyed) return;
    // An upload the server answered before reading it all (a 401) can never finish: cut it.
    const req = (this.body as IncomingMessage & { req?: http.ClientRequest }).req;
    // A large unread body is cheaper to cut than to drain.
    const length = Number(this.header('content-length') ?? NaN);
    if ((req && !req.writableFinished) || (!this.body.complete && !(length <= 64 * 1024))) {
      this.body.destroy();
      req?.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      this.body.on('end', resolve).on('error', () => resolve()).on('close', resolve);
      this.body.resume();
    });
  }
}

export class BodyTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`response body larger than ${limit} bytes`);
  }
}

/** A failure below HTTP, shaped like fetch's (`cause.code`), so callers read both the same way. */
export class HttpTransportError extends Error {
  constructor(readonly url: string, override readonly cause: NodeJS.ErrnoException, readonly reusedSocket: boolean) {
    super(cause.message);
  }
}

const agents = {
  http: new http.Agent({ keepAlive: true, maxSockets: 16 }),
  https: new https.Agent({ keepAlive: true, maxSockets: 16 }),
};

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

function once(url: URL, o: HttpRequestOptions, headers: Record<string, string>): Promise<{ res: IncomingMessage; reused: boolean }> {
  const isHttps = url.protocol === 'https:';
  const mod = isHttps ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, {
      method: o.method ?? 'GET',
      headers,
      agent: isHttps ? agents.https : agents.http,
      timeout: o.idleTimeoutMs ?? 300_000,
    });
    let settled = false;
    const fail = (e: NodeJS.ErrnoException): void => {
      if (settled) return;
      settled = true;
      reject(new HttpTransportError(url.toString(), e, req.reusedSocket));
    };
    req.on('timeout', () => {
      const e: NodeJS.ErrnoException = new Error(`no answer for ${Math.round((o.idleTimeoutMs ?? 300_000) / 1000)} s`);
      e.code = 'ETIMEDOUT';
      req.destroy(e);
    });
    req.on('error', fail);
    req.on('response', (res) => {
      settled = true;
      // The socket timeout keeps guarding the body: a stalled download fails instead of hanging.
      res.on('error', () => undefined);
      resolve({ res, reused: req.reusedSocket });
    });
    const body = o.body;
    if (body instanceof Readable) {
      body.on('error', (e) => req.destroy(e));
      // A server that answers (or hangs up) before taking the whole upload leaves the file open otherwise.
      req.on('close', () => {
        if (!body.readableEnded) body.destroy();
      });
      body.pipe(req);
    } else {
      req.end(body);
    }
  });
}

/** One request, following redirects for GET and HEAD. Network failures throw HttpTransportError. */
export async function httpRequest(urlText: string, o: HttpRequestOptions = {}): Promise<HttpResponse> {
  let url = new URL(urlText);
  const method = o.method ?? 'GET';
  let headers = { ...o.headers };
  const follow = method === 'GET' || method === 'HEAD' ? (o.maxRedirects ?? 10) : 0;
  for (let hop = 0; ; hop++) {
    const { res } = await once(url, hop === 0 ? o : { ...o, body: undefined }, headers);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (!REDIRECTS.has(status) || !location || hop >= follow) {
      return new HttpResponse(status, res.statusMessage ?? '', res.headers, res, url.toString());
    }
    res.resume();
    const next = new URL(location, url);
    if (next.origin !== url.origin) {
      // Credentials for the registry must not reach the storage service it redirects to (signed URLs carry their own).
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
    }
    url = next;
  }
}
