import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { buildOciConfig, DEFAULT_CAPABILITIES, DEFAULT_PATH } from '../../src/executor/spec.js';
import { hostsFile, resolvConfFor } from '../../src/executor/netfiles.js';
import { detectRuntimeIn, parseCgroupLayout, runtimeInvocation } from '../../src/executor/runtime.js';
import type { RunSpec } from '../../src/executor/types.js';
import { tempDir } from './fixtures.js';

const FILES = { hostsPath: '/state/b/hosts', resolvConfPath: '/state/b/resolv.conf' };

function spec(over: Partial<RunSpec> = {}): RunSpec {
  return {
    rootfs: '/r',
    args: ['sh', '-c', 'true'],
    env: ['A=1'],
    cwd: '/',
    user: { uid: 0, gid: 0, additionalGids: [] },
    network: 'none',
    mounts: [],
    ...over,
  };
}

describe('buildOciConfig', () => {
  it('gives Docker\'s 14 capabilities, no rlimits and noNewPrivileges false', () => {
    const c = buildOciConfig(spec(), FILES);
    assert.equal(DEFAULT_CAPABILITIES.length, 14);
    for (const set of [c.process.capabilities.bounding, c.process.capabilities.effective, c.process.capabilities.permitted]) {
      assert.deepEqual(set, [...DEFAULT_CAPABILITIES]);
    }
    assert.equal(c.process.noNewPrivileges, false);
    assert.equal('rlimits' in c.process, false);
    assert.equal(c.process.terminal, false);
    assert.ok(c.linux.maskedPaths.includes('/proc/kcore'));
    assert.ok(c.linux.readonlyPaths.includes('/proc/sys'));
  });

  it('has a network namespace only for network none', () => {
    const types = (n: 'none' | 'host'): string[] => buildOciConfig(spec({ network: n }), FILES).linux.namespaces.map((x) => x.type);
    assert.deepEqual(types('none'), ['pid', 'ipc', 'uts', 'mount', 'network']);
    assert.deepEqual(types('host'), ['pid', 'ipc', 'uts', 'mount']);
  });

  it('puts the primary gid first in the group list once', () => {
    const c = buildOciConfig(spec({ user: { uid: 5, gid: 7, additionalGids: [8, 9] } }), FILES);
    assert.deepEqual(c.process.user, { uid: 5, gid: 7, additionalGids: [7, 8, 9] });
    const d = buildOciConfig(spec({ user: { uid: 5, gid: 8, additionalGids: [7, 8] } }), FILES);
    assert.deepEqual(d.process.user.additionalGids, [7, 8]);
  });

  it('adds the default PATH only when missing', () => {
    assert.deepEqual(buildOciConfig(spec(), FILES).process.env, ['A=1', `PATH=${DEFAULT_PATH}`]);
    assert.deepEqual(buildOciConfig(spec({ env: ['PATH=/x'] }), FILES).process.env, ['PATH=/x']);
  });

  it('binds the generated hosts and resolv.conf read-only and lets a user mount replace them', () => {
    const c = buildOciConfig(spec(), FILES);
    const hosts = c.mounts.find((m) => m.destination === '/etc/hosts');
    assert.deepEqual(hosts, { destination: '/etc/hosts', type: 'bind', source: FILES.hostsPath, options: ['nosuid', 'noexec', 'nodev', 'rbind', 'ro'] });
    const over = buildOciConfig(spec({ mounts: [{ type: 'bind', source: '/mine', target: '/etc/hosts/', readonly: false }] }), FILES);
    const found = over.mounts.filter((m) => m.destination === '/etc/hosts');
    assert.deepEqual(found, [{ destination: '/etc/hosts', type: 'bind', source: '/mine', options: ['rbind', 'rw'] }]);
    assert.equal(over.mounts.indexOf(found[0]!), c.mounts.indexOf(hosts!));
  });

  it('writes tmpfs size and mode, and ro binds', () => {
    const c = buildOciConfig(
      spec({
        mounts: [
          { type: 'tmpfs', target: '/tmp', size: 1048576, mode: 0o1777 },
          { type: 'bind', source: '/src', target: '/ro/./x', readonly: true },
        ],
      }),
      FILES,
    );
    assert.deepEqual(c.mounts.at(-2), { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'size=1048576', 'mode=1777'] });
    assert.deepEqual(c.mounts.at(-1), { destination: '/ro/x', type: 'bind', source: '/src', options: ['rbind', 'ro'] });
  });

  it('rejects relative paths and an empty argv', () => {
    assert.throws(() => buildOciConfig(spec({ cwd: 'work' }), FILES), (e: { code?: string }) => e.code === 'BAD_PATH');
    assert.throws(
      () => buildOciConfig(spec({ mounts: [{ type: 'tmpfs', target: 'tmp' }] }), FILES),
      (e: { code?: string }) => e.code === 'BAD_PATH',
    );
    assert.throws(() => buildOciConfig(spec({ args: [] }), FILES), (e: { code?: string }) => e.code === 'BAD_RUN');
  });
});

describe('generated network files', () => {
  it('hosts maps localhost and the hostname', () => {
    assert.equal(hostsFile('box'), '127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n');
  });

  it('resolv.conf keeps the host file for host networking', () => {
    const host = 'search example.org\nnameserver 127.0.0.53\n';
    assert.equal(resolvConfFor(host, 'host'), host);
  });

  it('resolv.conf drops loopback nameservers in a private netns and falls back to public ones', () => {
    assert.equal(
      resolvConfFor('search example.org\nnameserver 127.0.0.53\noptions edns0\n', 'none'),
      'search example.org\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\nnameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844\n',
    );
    assert.equal(resolvConfFor('nameserver ::1\nnameserver 10.0.0.2\n', 'none'), 'nameserver 10.0.0.2\n');
  });
});

describe('runtime detection', () => {
  const hybrid = [
    '30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
    '40 30 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  ].join('\n');

  it('sees hybrid cgroups and pure v1/v2 hosts', () => {
    assert.deepEqual(parseCgroupLayout(hybrid).hybridUnifiedMounts, ['/sys/fs/cgroup/unified']);
    assert.deepEqual(parseCgroupLayout('40 30 0:35 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw').hybridUnifiedMounts, []);
    assert.deepEqual(parseCgroupLayout(hybrid.split('\n').slice(0, 2).join('\n')).hybridUnifiedMounts, []);
  });

  it('wraps crun (only) in a private mount namespace on hybrid hosts', () => {
    const layout = parseCgroupLayout(hybrid);
    const crun = runtimeInvocation({ name: 'crun', path: '/usr/bin/crun' }, '/st', ['list'], layout);
    assert.equal(crun.file, 'unshare');
    assert.deepEqual(crun.args.slice(0, 4), ['-m', '--propagation', 'private', 'sh']);
    assert.match(crun.args[5]!, /^umount '\/sys\/fs\/cgroup\/unified' 2>\/dev\/null; exec "\$0" "\$@"$/);
    assert.deepEqual(crun.args.slice(6), ['/usr/bin/crun', '--root', '/st', 'list']);
    const plain = runtimeInvocation({ name: 'crun', path: '/usr/bin/crun' }, '/st', ['list'], parseCgroupLayout(''));
    assert.deepEqual(plain, { file: '/usr/bin/crun', args: ['--root', '/st', 'list'] });
    const runc = runtimeInvocation({ name: 'runc', path: '/usr/sbin/runc' }, '/st', ['list'], layout);
    assert.deepEqual(runc, { file: '/usr/sbin/runc', args: ['--root', '/st', 'list'] });
  });

  it('the wrapper really runs crun on this host', async (t) => {
    const rt = await detectRuntimeIn(['/usr/bin', '/usr/sbin', '/bin', '/sbin'], 'crun').catch(() => undefined);
    if (!rt) return t.skip('crun is not installed (apt-get install crun)');
    const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
    const inv = runtimeInvocation(rt, '/nonexistent-root', ['--version'], parseCgroupLayout(mountinfo));
    const { execFileSync } = await import('node:child_process');
    assert.match(execFileSync(inv.file, inv.args, { encoding: 'utf8' }), /crun version/);
  });

  it('prefers crun, honours STRATA_RUNTIME and names the packages when nothing is installed', async () => {
    const saved = process.env.STRATA_RUNTIME;
    const empty = tempDir('nort');
    try {
      delete process.env.STRATA_RUNTIME;
      await assert.rejects(detectRuntimeIn([empty]), (e: { code?: string; hint?: string; message: string }) => {
        assert.equal(e.code, 'NO_RUNTIME');
        assert.match(`${e.message} ${e.hint}`, /apt-get install crun/);
        assert.match(`${e.message} ${e.hint}`, /runc/);
        return true;
      });
      const dirs = ['/usr/bin', '/usr/sbin', '/bin', '/sbin'];
      const installed = await Promise.all(['crun', 'runc'].map((n) => detectRuntimeIn(dirs, n as 'crun').then(() => true, () => false)));
      const first = await detectRuntimeIn(dirs);
      assert.equal(first.name, installed[0] ? 'crun' : 'runc');
      if (installed[1]) {
        process.env.STRATA_RUNTIME = 'runc';
        assert.equal((await detectRuntimeIn(dirs, 'crun')).name, 'runc');
      }
      process.env.STRATA_RUNTIME = 'docker';
      await assert.rejects(detectRuntimeIn(dirs), (e: { code?: string }) => e.code === 'BAD_RUNTIME');
      process.env.STRATA_RUNTIME = 'crun';
      await assert.rejects(detectRuntimeIn([empty]), (e: { code?: string; hint?: string }) => {
        assert.equal(e.code, 'NO_RUNTIME');
        assert.match(e.hint ?? '', /apt-get install crun/);
        return true;
      });
    } finally {
      if (saved === undefined) delete process.env.STRATA_RUNTIME;
      else process.env.STRATA_RUNTIME = saved;
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
