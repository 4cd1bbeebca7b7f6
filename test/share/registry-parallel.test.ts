// A cache export to a registry moves its layer blobs several at once, and what arrives verifies: a
// proxy in front of the loopback registry counts blob requests in flight (until two were in flight
// at once it holds each blob check up to 3 s for a second request, so a one-at-a-time exporter shows
// as a peak of 1), and a fresh store imports the cache through the registry and hits every step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Machine, allCached, busyboxContext, stepsSummary } from './support.js';
import { startRegistry } from '../helpers/registry.js';

const DOCKERFILE = [
  'FROM busybox',
  ...[1, 2, 3, 4].map((i) => `RUN dd if=/dev/urandom of=/part${i} bs=1024 count=${600 + i} 2>/dev/null`),
  '',
].join('\n');

test('cache export to a registry uploads layers in parallel; a fresh store imports them verified', async (t) => {
  const reg = await startRegistry();
  let inFlight = 0;
  let peak = 0;
  const waiters: (() => void)[] = [];
  const proxy = createServer((req: IncomingMessage, res: ServerResponse) => {
    const blob = (req.url ?? '').includes('/blobs/');
    let forwarded = false;
    const forward = (): void => {
      if (forwarded) return;
      forwarded = true;
      const upstream = request({ host: '127.0.0.1', port: Number(reg.host.split(':')[1]), method: req.method, path: req.url, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    if (!blob) {
      forward();
      return;
    }
    inFlight++;
    peak = Math.max(peak, inFlight);
    res.on('close', () => inFlight--);
    for (const w of waiters.splice(0)) w();
    if (req.method === 'HEAD' && peak < 2) {
      const timer = setTimeout(forward, 3000);
      waiters.push(() => {
        clearTimeout(timer);
        forward();
      });
      return;
    }
    forward();
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxyHost = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const a = new Machine('reg-par-a');
  const b = new Machine('reg-par-b');
  t.after(async () => {
    a.cleanup();
    b.cleanup();
    proxy.closeAllConnections();
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
    await reg.stop();
  });
  const bb = await busyboxContext();
  const files = { Dockerfile: DOCKERFILE };
  const built = await a.ok(a.context('ctx', files), [...bb, '--cache-to', `type=registry,ref=${proxyHost}/par/cache:1,mode=max`]);
  assert.match(built.stderr, /exported cache to .*: 4 records/);
  assert.ok(peak >= 2, `blob requests in flight at once: ${peak}`);
  const puts = (await reg.requests()).filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/'));
  assert.equal(puts.length, 6, 'busybox + 4 RUN layers + the cache index, each one PUT');

  const hit = await b.ok(b.context('ctx', files), [...bb, '--cache-from', `type=registry,ref=${reg.host}/par/cache:1`]);
  assert.ok(allCached(hit), stepsSummary(hit));
  const fetched = await b.strata(['cache', 'import', `type=registry,ref=${reg.host}/par/cache:1`, '--fetch']);
  assert.equal(fetched.code, 0, fetched.stderr);
  assert.match(fetched.stdout, /5 layers listed/);
});
