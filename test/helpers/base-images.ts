// Test helper: base images for every test that needs a FROM, built locally (no Docker Hub).
//
//   const dir = await busyboxLayout();                 // OCI layout, tag `latest` (read-only: copy before changing it)
//   const { ref, digest } = await pushBusybox(reg.host);   // -> `127.0.0.1:PORT/busybox:latest`
//   const deb = await debianLayout();                  // Debian bookworm minbase, tag `bookworm`
//   await pushDebian(reg.host);                        // -> `127.0.0.1:PORT/debian:bookworm`
//
// busybox: one gzip layer from the host's /bin/busybox (busybox-static) with every applet as a
// symlink in /bin, /sbin, /usr/bin, /usr/sbin; /etc/passwd with root, nobody and `app` (1000:1000,
// home /home/app); /etc/group; /tmp (1777); /root (0700); /dev empty (no /proc, /sys: runtimes
// create those, which the differ must ignore). Config: Env PATH, Cmd ["sh"], linux/amd64. Entries,
// owners and mtimes are fixed, so its digest depends only on the busybox binary.
// Built with strata's own src/image code once per process and cached on disk under
// `${STRATA_TEST_CACHE:-~/.cache/strata-test}/busybox-<sha of the binary>-<recipe>`.
//
// debian: `mmdebstrap --variant=minbase --format=tar bookworm` using the host's Debian sources
// (/etc/apt/sources.list or /etc/apt/sources.list.d/debian.sources), device nodes removed, one gzip
// layer. Built ONCE (a minute or two, needs the Debian mirror) and cached in
// `${STRATA_TEST_CACHE:-~/.cache/strata-test}/debian-bookworm` for later runs. When it cannot be
// built, `debianLayout()` throws `BaseImageUnavailable` whose message is the skip reason:
//   try { dir = await debianLayout(); } catch (e) { if (e instanceof BaseImageUnavailable) return t.skip(e.message); throw e; }
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGzip } from 'node:zlib';
import { RegistryClient } from '../../src/registry/client.js';
import { parseReference } from '../../src/registry/reference.js';
import { readOciLayout, writeOciLayout, type LayoutImage } from '../../src/image/oci-layout.js';
import { pushImage } from '../../src/image/push.js';
import { MediaTypes } from '../../src/image/types.js';
import { FIXED_TIME, HashTap, assembleImage, writeLayer, type LayerEntry } from './layers.js';

/** Bump when the busybox recipe changes so stale caches are not reused. */
const BUSYBOX_RECIPE = 'v1';
const DEBIAN_RECIPE = 'v1';
export const TEST_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export class BaseImageUnavailable extends Error {}

export function testCacheRoot(): string {
  return process.env.STRATA_TEST_CACHE || join(homedir(), '.cache', 'strata-test');
}

// ---- shared: build into a temp dir, publish with one rename, one builder at a time ------------

async function layoutUsable(dir: string, tag: string, verifyLayers: boolean): Promise<boolean> {
  if (!existsSync(join(dir, 'index.json'))) return false;
  try {
    await readOciLayout(dir, tag, { verifyLayers, platform: { os: 'linux', architecture: 'amd64' } });
    return true;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A lock directory holding the owner's pid; a dead owner's lock is taken over. */
async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(dirname(lockDir), { recursive: true });
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(await readFile(join(lockDir, 'pid'), 'utf8').catch(() => '0'));
      if (pid > 0 && !pidAlive(pid)) {
        await rm(lockDir, { recursive: true, force: true });
        continue;
      }
      await sleep(250);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(join(lockDir, 'pid'), { force: true });
    await rmdir(lockDir).catch(() => undefined);
  }
}

/** Returns `finalDir` when `usable`, else builds `<tmp>/layout` under a lock and renames it into place. */
async function cachedLayout(finalDir: string, usable: () => Promise<boolean>, build: (tmpDir: string) => Promise<void>): Promise<string> {
  if (await usable()) return finalDir;
  return withLock(`${finalDir}.lock`, async () => {
    if (await usable()) return finalDir;
    await mkdir(dirname(finalDir), { recursive: true });
    const tmp = await mkdtemp(`${finalDir}.build-`);
    try {
      await build(tmp);
      await rm(finalDir, { recursive: true, force: true });
      await rename(join(tmp, 'layout'), finalDir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return finalDir;
  });
}

// ---- busybox ----------------------------------------------------------------------------------

function busyboxBinary(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) if (existsSync(p)) return p;
  throw new BaseImageUnavailable('no /bin/busybox: install busybox-static');
}

function busyboxEntries(bin: string): LayerEntry[] {
  const list = spawnSync(bin, ['--list-full'], { encoding: 'utf8' });
  if (list.status !== 0) throw new BaseImageUnavailable(`${bin} --list-full failed: ${list.stderr}`);
  const applets = list.stdout.split('\n').map((s) => s.trim()).filter((s) => s && s !== 'bin/busybox');
  const dirs = new Map<string, LayerEntry>();
  const dir = (name: string, mode = 0o755, uid = 0, gid = 0): void => {
    dirs.set(name, { name: `${name}/`, type: 'directory', mode, uid, gid });
  };
  for (const d of ['bin', 'dev', 'etc', 'home', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'var', 'var/spool', 'var/www']) dir(d);
  dir('home/app', 0o755, 1000, 1000);
  dir('root', 0o700);
  dir('tmp', 0o1777);
  const passwd = [
    'root:x:0:0:root:/root:/bin/sh',
    'app:x:1000:1000:app:/home/app:/bin/sh',
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
    '',
  ].join('\n');
  const group = ['root:x:0:', 'app:x:1000:', 'nogroup:x:65534:', ''].join('\n');
  const files: LayerEntry[] = [
    { name: 'bin/busybox', mode: 0o755, sourceFile: bin, size: statSync(bin).size },
    { name: 'etc/passwd', content: passwd },
    { name: 'etc/group', content: group },
    { name: 'etc/shadow', mode: 0o640, content: 'root:*:19000:0:99999:7:::\napp:!:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' },
  ];
  const links: LayerEntry[] = applets.sort().map((name) => ({ name, type: 'symlink', linkname: '/bin/busybox' }));
  const all = [...dirs.values(), ...files, ...links];
  return all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

let busyboxPromise: Promise<string> | undefined;

/** Path of the cached busybox OCI layout (tag `latest`). Treat it as read-only. */
export function busyboxLayout(): Promise<string> {
  busyboxPromise ??= (async () => {
    const bin = busyboxBinary();
    const sha = createHash('sha256').update(readFileSync(bin)).digest('hex');
    const finalDir = join(testCacheRoot(), `busybox-${sha.slice(0, 16)}-${BUSYBOX_RECIPE}`);
    return cachedLayout(finalDir, () => layoutUsable(finalDir, 'latest', true), async (tmp) => {
      const blobDir = join(tmp, 'blobs');
      const layer = await writeLayer(blobDir, busyboxEntries(bin));
      const image = assembleImage(blobDir, {
        layers: [layer],
        config: { Env: [TEST_PATH], Cmd: ['sh'] },
        history: [{ created: FIXED_TIME.toISOString(), created_by: `strata test harness: busybox-static rootfs (${sha.slice(0, 12)})` }],
      });
      await writeOciLayout(join(tmp, 'layout'), image, { refName: 'latest' });
    });
  })();
  busyboxPromise.catch(() => { busyboxPromise = undefined; });
  return busyboxPromise;
}

/** The busybox image as exporter input (blobs inside the cached layout). */
export async function busyboxImage(): Promise<LayoutImage> {
  return readOciLayout(await busyboxLayout(), 'latest', { verifyLayers: false });
}

export interface PushedImage {
  /** `HOST/REPO:TAG` */
  ref: string;
  digest: string;
}

/** Pushes the busybox image to `registryHost` (e.g. `127.0.0.1:PORT`) with strata's client. */
export async function pushBusybox(registryHost: string, repo = 'busybox', tag = 'latest'): Promise<PushedImage> {
  const image = await busyboxImage();
  const ref = `${registryHost}/${repo}:${tag}`;
  const { digest } = await pushImage(new RegistryClient(), image, [parseReference(ref)]);
  return { ref, digest };
}

// ---- debian -----------------------------------------------------------------------------------

function debianSourcesArgs(): string[] {
  if (existsSync('/etc/apt/sources.list') && /^\s*deb\s.*debian/m.test(readFileSync('/etc/apt/sources.list', 'utf8'))) return ['/etc/apt/sources.list'];
  if (existsSync('/etc/apt/sources.list.d/debian.sources')) return ['/etc/apt/sources.list.d/debian.sources'];
  return [];
}

function run(cmd: string, args: string[], logFile: string): Promise<{ code: number; tail: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (b: Buffer): void => { out = (out + b.toString()).slice(-20_000); };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (e) => resolve({ code: 127, tail: e.message }));
    child.on('close', async (code) => {
      await writeFile(logFile, out).catch(() => undefined);
      resolve({ code: code ?? 1, tail: out.split('\n').slice(-12).join('\n') });
    });
  });
}

let debianPromise: Promise<string> | undefined;

/** Path of the cached Debian bookworm minbase OCI layout (tag `bookworm`); builds it on first use. */
export function debianLayout(): Promise<string> {
  debianPromise ??= (async () => {
    const finalDir = join(testCacheRoot(), 'debian-bookworm');
    const usable = async (): Promise<boolean> =>
      existsSync(join(finalDir, `strata-recipe-${DEBIAN_RECIPE}`)) && layoutUsable(finalDir, 'bookworm', false);
    if (await usable()) return finalDir;
    if (spawnSync('sh', ['-c', 'command -v mmdebstrap']).status !== 0) throw new BaseImageUnavailable('mmdebstrap is not installed');
    return cachedLayout(finalDir, usable, async (tmp) => {
      const rootTar = join(tmp, 'rootfs.tar');
      const log = join(testCacheRoot(), 'debian-bookworm.mmdebstrap.log');
      const r = await run('mmdebstrap', ['--variant=minbase', '--format=tar', 'bookworm', rootTar, ...debianSourcesArgs()], log);
      if (r.code !== 0) throw new BaseImageUnavailable(`mmdebstrap failed (exit ${r.code}; full log ${log}):\n${r.tail}`);
      // Containers get /dev from the runtime; images ship it empty.
      const del = await run('tar', ['--delete', '-f', rootTar, '--wildcards', './dev/?*'], `${log}.tar`);
      if (del.code !== 0 && !/Not found in archive/.test(del.tail)) throw new BaseImageUnavailable(`removing /dev nodes failed: ${del.tail}`);

      const blobDir = join(tmp, 'blobs');
      await mkdir(blobDir, { recursive: true });
      const diff = new HashTap();
      const comp = new HashTap();
      const layerTmp = join(blobDir, 'layer.tmp');
      await pipeline(createReadStream(rootTar), diff, createGzip({ level: 6 }), comp, createWriteStream(layerTmp));
      const hex = comp.hash.digest('hex');
      await rename(layerTmp, join(blobDir, hex));
      await rm(rootTar, { force: true });
      const layer = {
        path: join(blobDir, hex), digest: `sha256:${hex}`, diffId: `sha256:${diff.hash.digest('hex')}`, size: comp.size,
        descriptor: { mediaType: MediaTypes.ociLayerGzip, digest: `sha256:${hex}`, size: comp.size },
      };
      const image = assembleImage(blobDir, {
        layers: [layer],
        config: { Env: [TEST_PATH], Cmd: ['bash'] },
        history: [{ created: FIXED_TIME.toISOString(), created_by: 'mmdebstrap --variant=minbase bookworm (strata test harness)' }],
      });
      await writeOciLayout(join(tmp, 'layout'), image, { refName: 'bookworm' });
      await writeFile(join(tmp, 'layout', `strata-recipe-${DEBIAN_RECIPE}`), '');
    });
  })();
  debianPromise.catch(() => { debianPromise = undefined; });
  return debianPromise;
}

export async function debianImage(): Promise<LayoutImage> {
  return readOciLayout(await debianLayout(), 'bookworm', { verifyLayers: false });
}

/** Pushes the Debian image to `registryHost` as REPO:TAG (default debian:bookworm). */
export async function pushDebian(registryHost: string, repo = 'debian', tag = 'bookworm'): Promise<PushedImage> {
  const image = await debianImage();
  const ref = `${registryHost}/${repo}:${tag}`;
  const { digest } = await pushImage(new RegistryClient(), image, [parseReference(ref)]);
  return { ref, digest };
}
