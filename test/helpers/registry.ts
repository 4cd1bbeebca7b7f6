// Test helper: a private OCI registry (Debian's `docker-registry`, distribution 2.8) per test file.
//
//   const reg = await startRegistry();          // listens on 127.0.0.1:<random port>
//   after(() => reg.stop());                    // kills it and deletes its storage
//   const ref = parseReference(`${reg.host}/app:1`);
//
// - `host` is `127.0.0.1:PORT`; loopback registries are plain HTTP for strata, skopeo (with
//   --tls-verify=false) and podman (with the registries.conf from ./podman.ts).
// - The registry log (one line per request, plus noise such as 404s on blob HEADs) goes to
//   `logFile`, never to the test output. `requests()` parses its access-log lines, so a test can
//   assert what was (not) fetched: `(await reg.requests()).filter(r => r.method === 'GET' && r.path.includes('/blobs/'))`.
// - `storageDir` is the registry's rootdirectory; `blobDataPath(digest)` is where a blob's bytes live
//   (for corruption tests).
// - `auth: { htpasswd }` runs it with Basic auth (see `makeHtpasswd`), `auth: { token }` with bearer
//   tokens from a token server (see ./token-server.ts).
// Registries still running when the process exits are killed by an exit hook.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RegistryRequest {
  method: string;
  path: string;
  status: number;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  logFile: string;
  /** The registry's storage rootdirectory. */
  storageDir: string;
  /** Where the registry keeps a blob's bytes: `<storage>/docker/registry/v2/blobs/sha256/xx/HEX/data`. */
  blobDataPath(digest: string): string;
  /** Requests the registry has answered so far, from its access log. */
  requests(): Promise<RegistryRequest[]>;
  /** How many answered requests match; `method` and a substring of the path are optional filters. */
  requestCount(filter?: { method?: string; pathIncludes?: string }): Promise<number>;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  auth?:
    | { htpasswd: { file: string; realm?: string } }
    | { token: { realm: string; service: string; issuer: string; rootCertBundle: string } };
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

function yamlString(s: string): string {
  return JSON.stringify(s);
}

function configYaml(root: string, opts: StartRegistryOptions): string {
  const lines = [
    'version: 0.1',
    'log: { level: info, accesslog: { disabled: false } }',
    `storage: { filesystem: { rootdirectory: ${yamlString(root)} }, delete: { enabled: true } }`,
    'http: { addr: 127.0.0.1:0, secret: strata-test-secret }',
  ];
  const auth = opts.auth;
  if (auth && 'htpasswd' in auth) {
    lines.push(`auth: { htpasswd: { realm: ${yamlString(auth.htpasswd.realm ?? 'strata-test')}, path: ${yamlString(auth.htpasswd.file)} } }`);
  } else if (auth && 'token' in auth) {
    const t = auth.token;
    lines.push(`auth: { token: { realm: ${yamlString(t.realm)}, service: ${yamlString(t.service)}, issuer: ${yamlString(t.issuer)}, rootcertbundle: ${yamlString(t.rootCertBundle)} } }`);
  }
  return lines.join('\n') + '\n';
}

const ACCESS_LINE = /^\S+ - \S+ \[[^\]]+\] "(\S+) (\S+) [^"]*" (\d{3}) /;

function parseAccessLog(text: string): RegistryRequest[] {
  const out: RegistryRequest[] = [];
  for (const line of text.split('\n')) {
    const m = ACCESS_LINE.exec(line);
    if (m) out.push({ method: m[1]!, path: m[2]!, status: Number(m[3]) });
  }
  return out;
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  if (spawnSync('sh', ['-c', 'command -v docker-registry'], { encoding: 'utf8' }).status !== 0) {
    throw new Error('docker-registry is not installed (apt-get install docker-registry)');
  }
  installExitHook();
  const base = mkdtempSync(join(tmpdir(), 'strata-registry-'));
  const storageDir = join(base, 'storage');
  const cfg = join(base, 'config.yml');
  const logFile = join(base, 'registry.log');
  writeFileSync(cfg, configYaml(storageDir, opts));
  writeFileSync(logFile, '');

  const logFd = openSync(logFile, 'a');
  const child = spawn('docker-registry', ['serve', cfg], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  running.add(child);
  let exited = false;
  const exitPromise = new Promise<void>((resolve) => child.once('exit', () => { exited = true; running.delete(child); resolve(); }));
  child.once('error', () => { exited = true; });

  const fail = async (why: string): Promise<never> => {
    child.kill('SIGKILL');
    await exitPromise.catch(() => undefined);
    const tail = readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n');
    rmSync(base, { recursive: true, force: true });
    throw new Error(`docker-registry did not start: ${why}\n--- registry log tail ---\n${tail}`);
  };

  let host: string | undefined;
  const deadline = Date.now() + 15_000;
  while (!host) {
    const m = /listening on (127\.0\.0\.1:\d+)/.exec(readFileSync(logFile, 'utf8'));
    if (m) host = m[1];
    else if (exited) return fail('the process exited');
    else if (Date.now() > deadline) return fail('no "listening on" line within 15 s');
    else await sleep(15);
  }
  for (;;) {
    try {
      const res = await fetch(`http://${host}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) break;
    } catch { /* not accepting yet */ }
    if (exited) return fail('the process exited');
    if (Date.now() > deadline) return fail('GET /v2/ never answered');
    await sleep(15);
  }

  const readRequests = async (): Promise<RegistryRequest[]> => {
    // The access line is written just after the response is sent; wait until the log stops growing.
    let prev = -1;
    for (let i = 0; i < 50; i++) {
      const text = readFileSync(logFile, 'utf8');
      if (text.length === prev) return parseAccessLog(text);
      prev = text.length;
      await sleep(20);
    }
    return parseAccessLog(readFileSync(logFile, 'utf8'));
  };

  let stopped = false;
  return {
    host,
    logFile,
    storageDir,
    blobDataPath(digest: string): string {
      const hex = digest.replace(/^sha256:/, '');
      return join(storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    },
    requests: readRequests,
    async requestCount(filter = {}): Promise<number> {
      return (await readRequests()).filter((r) =>
        (filter.method === undefined || r.method === filter.method) &&
        (filter.pathIncludes === undefined || r.path.includes(filter.pathIncludes))).length;
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      if (!exited) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exitPromise;
        clearTimeout(killer);
      }
      if (existsSync(base)) rmSync(base, { recursive: true, force: true });
    },
  };
}

/**
 * One bcrypt htpasswd line (`user:$2y$...`) for docker-registry's htpasswd auth, made with
 * `htpasswd` (apache2-utils) or python3's crypt module; `{ skip }` names what is missing.
 */
export function makeHtpasswd(user: string, password: string): { line: string } | { skip: string } {
  // Cost 4 (the minimum): the registry checks the hash on every request, and cost 12 costs ~250 ms each.
  const viaHtpasswd = spawnSync('htpasswd', ['-nbB', '-C', '4', user, password], { encoding: 'utf8' });
  if (!viaHtpasswd.error && viaHtpasswd.status === 0) {
    const line = viaHtpasswd.stdout.trim();
    if (line.startsWith(`${user}:$2`)) return { line };
  }
  const py = 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))';
  for (const python of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(python, ['-W', 'ignore', '-c', py, password], { encoding: 'utf8' });
    const hash = r.stdout?.trim() ?? '';
    if (!r.error && r.status === 0 && hash.startsWith('$2')) return { line: `${user}:${hash}` };
  }
  return { skip: 'no bcrypt tool: install apache2-utils (htpasswd) or a python3 whose crypt module supports bcrypt' };
}

/** Writes a Docker config.json with `auths` for the given hosts; returns its path. */
export function writeDockerConfig(dir: string, auths: Record<string, { username: string; password: string }>): string {
  const path = join(dir, 'config.json');
  const entries = Object.fromEntries(Object.entries(auths).map(([host, c]) => [host, { auth: Buffer.from(`${c.username}:${c.password}`).toString('base64') }]));
  writeFileSync(path, JSON.stringify({ auths: entries }, null, 2));
  return path;
}
