// seed004 (BENCHMARKS.md): a Go build whose compiler cache lives in a cache mount.
//
// The context is the four Go files in bench/seed004/app/ (package main: a cobra CLI serving the
// gRPC health service and Prometheus metrics) plus a Dockerfile written here with the loopback
// registry's base. The Go code compiles against Debian bookworm's packaged libraries in GOPATH
// mode (grpc 1.33, client_golang 1.14, cobra 1.6, Go 1.19). The apt caches are cache mounts; the
// minbase has no /etc/apt/apt.conf.d/docker-clean (Docker's debian images do, and it would empty
// /var/cache/apt after every install), so the .debs stay in the mount.
// No `# syntax=` line: docker would fetch a frontend from Docker Hub.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';

export const SEED004_PACKAGES = [
  'golang-go',
  'golang-google-grpc-dev',
  'golang-github-prometheus-client-golang-dev',
  'golang-github-spf13-cobra-dev',
];

/** The file the one-file change edits, and the constant in it. */
export const SEED004_CHANGED_FILE = 'version.go';
const RELEASE_LINE = /^const release = ".*"$/m;

export function seed004Dockerfile(base: string): string {
  return [
    `FROM ${base}`,
    'RUN --mount=type=cache,target=/var/cache/apt,sharing=locked --mount=type=cache,target=/var/lib/apt/lists,sharing=locked '
      + `apt-get update && apt-get install -y --no-install-recommends ${SEED004_PACKAGES.join(' ')}`,
    'ENV GO111MODULE=off GOPATH=/usr/share/gocode CGO_ENABLED=0',
    'WORKDIR /src',
    'COPY . .',
    'RUN --mount=type=cache,target=/root/.cache/go-build go build -o /out/app .',
    '',
  ].join('\n');
}

function appDir(): string {
  return join(repoRoot(), 'bench', 'seed004', 'app');
}

/** Writes the context into `dir` (created); returns the number of files. */
export function writeSeed004(dir: string, base: string): number {
  mkdirSync(dir, { recursive: true });
  const sources = readdirSync(appDir()).filter((f) => f.endsWith('.go')).sort();
  for (const f of sources) copyFileSync(join(appDir(), f), join(dir, f));
  writeFileSync(join(dir, 'Dockerfile'), seed004Dockerfile(base));
  setRelease(dir, 'seed004 initial');
  return sources.length + 1;
}

/** The one-file change: rewrites the `release` string constant in version.go. */
export function setRelease(dir: string, release: string): void {
  const file = join(dir, SEED004_CHANGED_FILE);
  const text = readFileSync(file, 'utf8');
  if (!RELEASE_LINE.test(text)) throw new Error(`${file} has no \`const release = "..."\` line to change`);
  writeFileSync(file, text.replace(RELEASE_LINE, `const release = ${JSON.stringify(release)}`));
}
