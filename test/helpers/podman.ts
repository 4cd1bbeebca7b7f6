// Test helper: run `podman` here without touching /etc (see shared/ENVIRONMENT.md section 4).
//
//   const pm = podman({ insecureRegistries: [reg.host] });   // writes its own containers.conf / registries.conf
//   if (!pm.available) return t.skip(pm.reason);
//   const r = pm.run(['load', '-i', tarFile]);                // { status, stdout, stderr }
//   pm.run(['run', '--rm', 'localhost/x:1', 'echo', 'hi']);
//   pm.cleanup();                                            // removes images it was asked to track + the conf files
//
// containers.conf sets runtime=runc and nofile/nproc ulimits within this machine's hard limits (crun
// and podman's default nofile both fail here); registries.conf marks loopback registries insecure.
// Both reach only the podman child processes, through CONTAINERS_CONF / CONTAINERS_REGISTRIES_CONF.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PodmanResult {
  status: number;
  stdout: string;
  stderr: string;
}

export interface Podman {
  available: boolean;
  /** Why podman cannot be used (when !available). */
  reason: string;
  env: NodeJS.ProcessEnv;
  run(args: string[], opts?: { timeoutMs?: number }): PodmanResult;
  /** Remember an image name/id to `podman rmi -f` in cleanup(). */
  track(image: string): void;
  cleanup(): void;
}

function hardLimit(flag: '-Hn' | '-Hu', fallback: number): number {
  const r = spawnSync('sh', ['-c', `ulimit ${flag}`], { encoding: 'utf8' });
  const n = Number(r.stdout.trim());
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

export function podman(opts: { insecureRegistries?: string[] } = {}): Podman {
  const dir = mkdtempSync(join(tmpdir(), 'strata-podman-'));
  const nofile = Math.min(hardLimit('-Hn', 20000), 1048576);
  const nproc = Math.min(hardLimit('-Hu', 32768), 32768);
  const containersConf = join(dir, 'containers.conf');
  writeFileSync(containersConf, [
    '[containers]',
    `default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]`,
    '[engine]',
    'runtime = "runc"',
    '',
  ].join('\n'));
  const registriesConf = join(dir, 'registries.conf');
  const regs = ['localhost', '127.0.0.1', ...(opts.insecureRegistries ?? [])];
  writeFileSync(registriesConf, [
    'unqualified-search-registries = []',
    ...[...new Set(regs)].flatMap((r) => ['[[registry]]', `location = "${r}"`, 'insecure = true', '']),
  ].join('\n'));
  const env = { ...process.env, CONTAINERS_CONF: containersConf, CONTAINERS_REGISTRIES_CONF: registriesConf };
  const tracked = new Set<string>();

  const run = (args: string[], o: { timeoutMs?: number } = {}): PodmanResult => {
    const r = spawnSync('podman', args, { env, encoding: 'utf8', timeout: o.timeoutMs ?? 120_000 });
    return { status: r.status ?? (r.error ? 127 : 1), stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
  };
  const probe = spawnSync('podman', ['--version'], { env, encoding: 'utf8' });
  const available = !probe.error && probe.status === 0;
  return {
    available,
    reason: available ? '' : 'podman is not installed',
    env,
    run,
    track: (image) => { tracked.add(image); },
    cleanup() {
      for (const image of tracked) run(['rmi', '-f', image]);
      tracked.clear();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
