import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StrataError } from '../../src/errors.js';
import {
  allowsPlainHttp, familiarReference, formatReference, parseReference, registryBaseUrl,
} from '../../src/registry/reference.js';

const D = 'sha256:' + 'ab'.repeat(32);

const valid: Array<[string, { registry: string; repository: string; tag?: string; digest?: string }]> = [
  ['busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
  ['busybox:1.36', { registry: 'docker.io', repository: 'library/busybox', tag: '1.36' }],
  ['library/busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
  ['docker.io/busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
  ['index.docker.io/busybox:musl', { registry: 'docker.io', repository: 'library/busybox', tag: 'musl' }],
  ['user/app:v1.2', { registry: 'docker.io', repository: 'user/app', tag: 'v1.2' }],
  ['localhost:5000/x', { registry: 'localhost:5000', repository: 'x', tag: 'latest' }],
  ['localhost/x', { registry: 'localhost', repository: 'x', tag: 'latest' }],
  ['127.0.0.1:5000/a/b:dev', { registry: '127.0.0.1:5000', repository: 'a/b', tag: 'dev' }],
  ['[::1]:5000/x:1', { registry: '[::1]:5000', repository: 'x', tag: '1' }],
  ['ghcr.io/org/team/app:Tag_1.0-rc', { registry: 'ghcr.io', repository: 'org/team/app', tag: 'Tag_1.0-rc' }],
  [`host.example/a/b:tag@${D}`, { registry: 'host.example', repository: 'a/b', tag: 'tag', digest: D }],
  [`localhost/a/b:tag@${D}`, { registry: 'localhost', repository: 'a/b', tag: 'tag', digest: D }],
  [`busybox@${D}`, { registry: 'docker.io', repository: 'library/busybox', digest: D }],
  [`localhost:5000/x@${D}`, { registry: 'localhost:5000', repository: 'x', digest: D }],
  ['a.b-c.example/d__e/f_g-h.i', { registry: 'a.b-c.example', repository: 'd__e/f_g-h.i', tag: 'latest' }],
  ['my-registry.local:443/x.y/z__w', { registry: 'my-registry.local:443', repository: 'x.y/z__w', tag: 'latest' }],
  ['  busybox  ', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
];

for (const [input, want] of valid) {
  test(`parseReference(${JSON.stringify(input)})`, () => {
    assert.deepEqual(parseReference(input), want);
  });
}

const invalid: Array<[string, RegExp]> = [
  ['', /empty/],
  ['BusyBox', /lowercase/],
  ['localhost:5000/MyApp', /lowercase/],
  ['busybox:', /tag after ":" is empty/],
  ['busybox:-x', /bad tag/],
  [`busybox:${'a'.repeat(129)}`, /bad tag/],
  ['busybox@sha256:abc', /bad digest/],
  [`busybox@sha256:${'A'.repeat(64)}`, /lowercase hex/],
  ['a//b', /empty component/],
  ['a/b/', /empty component/],
  ['-abc', /bad repository path component/],
  ['a..b', /bad repository path component/],
  [':tag', /repository name is missing/],
  ['a b', /whitespace/],
  ['ab'.repeat(32), /image ID/],
  [`x.io/${'a/'.repeat(130)}b`, /longer than 255/],
  ['bad_host.io:x/y', /bad registry host|bad tag/],
  ['a.b_c/f', /bad registry host/],
];

for (const [input, why] of invalid) {
  test(`parseReference rejects ${JSON.stringify(input.length > 40 ? input.slice(0, 40) + '...' : input)}`, () => {
    assert.throws(() => parseReference(input), (e: unknown) => {
      assert.ok(e instanceof StrataError, 'a StrataError');
      assert.equal(e.code, 'INVALID_REFERENCE');
      assert.match(e.message, why);
      assert.ok(e.hint && e.hint.length > 0, 'has a hint');
      return true;
    });
  });
}

test('formatReference gives the fully qualified form and round-trips', () => {
  for (const s of ['busybox', 'user/app:1', 'localhost:5000/x', `host.example/a/b:tag@${D}`, `busybox@${D}`, '[::1]:5000/x:1']) {
    const ref = parseReference(s);
    const full = formatReference(ref);
    assert.deepEqual(parseReference(full), ref, full);
  }
  assert.equal(formatReference(parseReference('busybox')), 'docker.io/library/busybox:latest');
  assert.equal(formatReference(parseReference('localhost:5000/nope')), 'localhost:5000/nope:latest');
});

test('familiarReference drops docker.io and library/ like docker does', () => {
  assert.equal(familiarReference(parseReference('docker.io/library/busybox:1')), 'busybox:1');
  assert.equal(familiarReference(parseReference('docker.io/user/app')), 'user/app:latest');
  assert.equal(familiarReference(parseReference('localhost/app:1')), 'localhost/app:1');
  assert.equal(familiarReference(parseReference('localhost:5000/library/x:1')), 'localhost:5000/library/x:1');
});

test('plain HTTP is allowed for loopback only, unless listed as insecure', () => {
  for (const r of ['localhost', 'localhost:5000', '127.0.0.1:5000', '127.1.2.3', '[::1]:5000', '[::1]']) {
    assert.equal(allowsPlainHttp(r), true, r);
  }
  for (const r of ['docker.io', 'ghcr.io', 'example.com:5000', '10.0.0.5:5000', '128.0.0.1:5000', 'localhost.example.com']) {
    assert.equal(allowsPlainHttp(r), false, r);
  }
  assert.equal(allowsPlainHttp('example.com:5000', ['example.com:5000']), true);
  assert.equal(allowsPlainHttp('example.com:5000', ['example.com']), true, 'a host entry covers every port');
  assert.equal(allowsPlainHttp('example.com:5001', ['example.com:5000']), false);
  assert.equal(allowsPlainHttp('10.1.2.3:5000', ['10.0.0.0/8']), true, 'CIDR');
  assert.equal(allowsPlainHttp('11.1.2.3:5000', ['10.0.0.0/8']), false, 'outside the CIDR');
  assert.equal(allowsPlainHttp('reg.internal', ['http://reg.internal/']), true, 'scheme and slash tolerated');
});

test('registryBaseUrl maps Docker Hub to its API host and picks the scheme', () => {
  assert.equal(registryBaseUrl('docker.io'), 'https://registry-1.docker.io');
  assert.equal(registryBaseUrl('localhost:5000'), 'http://localhost:5000');
  assert.equal(registryBaseUrl('ghcr.io'), 'https://ghcr.io');
  assert.equal(registryBaseUrl('reg:5000', ['reg:5000']), 'http://reg:5000');
});
