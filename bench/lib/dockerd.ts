// BuildKit side of the comparisons: Debian's docker.io (Docker 20.10 with its embedded BuildKit),
// talking to a dockerd on its own socket. A dockerd already answering there is reused and left
// running; otherwise one is started with its own data and exec roots and stopped (and its
// directories removed) by `stop()`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeTree } from './cleanup.js';
import { runTimed, type TimedRun, type TimedRunOptions } from './timed-run.js';

/** Debian's client: /usr/local/bin may hold a newer docker CLI that needs buildx for BuildKit. */
export const DOCKER_CLI = '/usr/bin/docker';
export const DOCKERD = '/usr/sbin/dockerd';
export const DEFAULT_SOCKET = '/run/strata-bench-docker.sock';

export interface Dockerd {
  /** `unix:///run/strata-bench-docker.sock` */
  host: string;
  startedByUs: boolean;
  serverVersion: string;
  /** Runs `/usr/bin/docker -H HOST ARGS` with DOCKER_BUILDKIT=1 and a private DOCKER_CONFIG. */
  docker(args: string[], opts?: TimedRunOptions): Promise<TimedRun>;
  stop(): Promise<void>;
}

export function ensureDockerInstalled(log: (s: string) => void): void {
  if (existsSync(DOCKER_CLI) && existsSync(DOCKERD)) return;
  log('docker.io is missing: apt-get install -y docker.io');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', 'docker.io']]) {
    const r = spawnSync('apt-get', args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (exit ${r.status}); install docker.io by hand`);
  }
  if (!existsSync(DOCKER_CLI) || !existsSync(DOCKERD)) throw new Error(`docker.io installed but ${DOCKER_CLI} or ${DOCKERD} is missing`);
}

function serverVersion(host: string, env: NodeJS.ProcessEnv): string | undefined {
  const r = spawnSync(DOCKER_CLI, ['-H', host, 'version', '--format', '{{.Server.Version}}'], { env, encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export async function ensureDockerd(opts: { socket?: string; log: (s: string) => void }): Promise<Dockerd> {
  ensureDockerInstalled(opts.log);
  const socket = opts.socket ?? DEFAULT_SOCKET;
  const host = `unix://${socket}`;
  const configDir = mkdtempSync('/tmp/strata-bench-docker-config-');
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_BUILDKIT: '1', DOCKER_CONFIG: configDir };
  delete env.DOCKER_HOST;
  const docker = (args: string[], o: TimedRunOptions = {}) => runTimed(DOCKER_CLI, ['-H', host, ...args], { env, ...o });

  const running = serverVersion(host, env);
  if (running) {
    opts.log(`dockerd ${running} already answers on ${host}: using it, leaving it running`);
    return { host, startedByUs: false, serverVersion: running, docker, stop: async () => rmSync(configDir, { recursive: true, force: true }) };
  }

  const base = mkdtempSync('/tmp/strata-bench-dockerd-');
  const dataRoot = join(base, 'data');
  const execRoot = join(base, 'exec');
  const logFile = join(base, 'dockerd.log');
  const fd = openSync(logFile, 'a');
  const args = [
    '--iptables=false', '--ip6tables=false', '--bridge=none', '--storage-driver=overlay2',
    '--data-root', dataRoot, '--exec-root', execRoot, '--pidfile', join(base, 'dockerd.pid'),
    '--host', host,
  ];
  opts.log(`starting dockerd ${args.join(' ')}`);
  const child: ChildProcess = spawn(DOCKERD, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let exited = false;
  const exitPromise = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve(); }));
  child.once('error', () => { exited = true; });
  const killOnExit = (): void => { if (!exited) child.kill('SIGKILL'); };
  process.on('exit', killOnExit);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exitPromise;
      clearTimeout(killer);
    }
    process.off('exit', killOnExit);
    // dockerd unmounts its overlays on a clean stop; removeTree unmounts what a SIGKILL left.
    removeTree(base);
    rmSync(configDir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    const v = serverVersion(host, env);
    if (v) {
      opts.log(`dockerd ${v} ready on ${host}`);
      return { host, startedByUs: true, serverVersion: v, docker, stop };
    }
    if (exited || Date.now() > deadline) {
      const logTail = readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n');
      await stop();
      throw new Error(`dockerd did not come up on ${host}${exited ? ' (it exited)' : ' within 60 s'}\n--- dockerd log tail ---\n${logTail}`);
    }
    await sleep(200);
  }
}

/** dockerd treats 127.0.0.0/8 registries as insecure (plain HTTP) by default; check it does here. */
export async function checkLoopbackInsecure(d: Dockerd): Promise<void> {
  const r = await d.docker(['info', '--format', '{{json .RegistryConfig.InsecureRegistryCIDRs}}']);
  const text = r.lines.map((l) => l.text).join('\n');
  if (r.code !== 0 || !text.includes('127.0.0.0/8')) {
    throw new Error(`dockerd on ${d.host} does not list 127.0.0.0/8 as an insecure registry range (got: ${text.trim()}); `
      + 'it cannot pull the bench base image over plain HTTP. Start it with --insecure-registry 127.0.0.0/8.');
  }
}
