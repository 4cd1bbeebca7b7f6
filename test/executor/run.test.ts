// Real containers on a busybox overlay rootfs, for each installed runtime.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runContainer } from '../../src/executor/run.js';
import { resolveUser } from '../../src/executor/user.js';
import { runtimeRoot, bundlesDir } from '../../src/executor/layout.js';
import { runtimeTool } from '../../src/executor/invoke.js';
import type { RunResult, RunSpec, Runtime, RuntimeName } from '../../src/executor/types.js';
import { listContainers, mountOverlay, runtimeOrSkip, tempDir, writeUsers, type OverlayRoot } from './fixtures.js';

interface Captured extends RunResult {
  out: string;
  err: string;
}

for (const name of ['crun', 'runc'] as RuntimeName[]) {
  const found = await runtimeOrSkip(name);
  const skip = typeof found === 'string' ? found : false;

  describe(`runContainer with ${name}`, { skip }, () => {
    const rt = found as Runtime;
    let base: string;
    let ov: OverlayRoot;
    let stateDir: string;
    let host: string;

    before(() => {
      base = tempDir(`run-${name}`);
      ov = mountOverlay(join(base, 'rootfs'), (lower) => {
        writeUsers(lower);
        mkdirSync(join(lower, 'home', 'app'), { recursive: true });
        mkdirSync(join(lower, 'opt', 'tool'), { recursive: true });
      });
      stateDir = join(base, 'state');
      host = join(base, 'host');
      mkdirSync(host);
    });
    after(() => {
      ov.dispose();
      rmSync(base, { recursive: true, force: true });
    });

    async function run(script: string, over: Partial<RunSpec> = {}): Promise<Captured> {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const r = await runContainer(
        {
          rootfs: ov.merged,
          args: ['/bin/sh', '-c', script],
          env: [],
          cwd: '/',
          user: { uid: 0, gid: 0, additionalGids: [] },
          network: 'none',
          mounts: [],
          stdout: (b) => out.push(b),
          stderr: (b) => err.push(b),
          ...over,
        },
        { runtime: rt, stateDir },
      );
      return { ...r, out: Buffer.concat(out).toString(), err: Buffer.concat(err).toString() };
    }

    function assertNothingLeft(): void {
      assert.deepEqual(listContainers(rt, runtimeRoot(stateDir, rt.name)), []);
      assert.deepEqual(readdirSync(bundlesDir(stateDir)), []);
    }

    it('returns the exit code: 0, 5, and 300 as 44', async () => {
      assert.equal((await run('exit 0')).exitCode, 0);
      assert.equal((await run('exit 5')).exitCode, 5);
      assert.equal((await run('exit 300')).exitCode, 44);
      assertNothingLeft();
    });

    it('gives 137 to a process killed by SIGKILL from outside', async () => {
      const root = runtimeRoot(stateDir, rt.name);
      const r = await run('echo started; sleep 100', {
        stdout: () => {
          const [id] = listContainers(rt, root);
          void runtimeTool(rt, root, ['kill', id!, 'KILL']);
        },
      });
      assert.equal(r.exitCode, 137);
      assertNothingLeft();
    });

    it('streams stdout and stderr separately, each in order', async () => {
      const r = await run('for i in 1 2 3; do echo out$i; echo err$i >&2; done; seq 1 20000 | tail -n 1');
      assert.equal(r.out, 'out1\nout2\nout3\n20000\n');
      assert.equal(r.err, 'err1\nerr2\nerr3\n');
      assert.equal(r.exitCode, 0);
    });

    it('passes env and adds the default PATH', async () => {
      const r = await run('echo "$FOO|$BAR|$PATH"', { env: ['FOO=bar baz', 'BAR='] });
      assert.equal(r.out, 'bar baz||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
    });

    it('creates a missing cwd owned by the step user', async () => {
      const user = await resolveUser(ov.merged, 'app');
      const r = await run('pwd; touch mine', { cwd: '/home/app/a/b', user });
      assert.equal(r.out, '/home/app/a/b\n');
      assert.equal(r.exitCode, 0);
      for (const p of ['home/app/a', 'home/app/a/b']) {
        const st = statSync(join(ov.upper, p));
        assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [1234, 1234, 0o755]);
      }
      assert.equal(statSync(join(ov.upper, 'home/app/a/b/mine')).uid, 1234);
    });

    it('runs as the resolved user with its groups and no effective capabilities', async () => {
      const user = await resolveUser(ov.merged, 'app');
      const r = await run('id; grep CapEff /proc/self/status', { user });
      assert.equal(r.out, 'uid=1234(app) gid=1234(app) groups=1234(app),5555(extra),6666(more)\nCapEff:\t0000000000000000\n');
      const numeric = await run('id', { user: await resolveUser(ov.merged, '4321:5555') });
      assert.equal(numeric.out, 'uid=4321 gid=5555(extra) groups=5555(extra)\n');
    });

    it('has Docker\'s 14 capabilities as root and noNewPrivs off', async () => {
      const r = await run('grep -E "^(CapEff|CapBnd|CapPrm|NoNewPrivs)" /proc/self/status');
      assert.equal(r.out, 'CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t0\n');
    });

    it('network none has only lo, up; host sees the host interfaces', async () => {
      const none = await run('ip -o link | cut -d: -f2 | tr -d " "; cat /sys/class/net/lo/flags');
      assert.equal(none.out, 'lo\n0x9\n');
      const hostIfs = readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).filter((l) => l.trim() !== '').map((l) => l.split(':')[0]!.trim()).sort();
      const h = await run('tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | sort', { network: 'host' });
      assert.deepEqual(h.out.trim().split('\n'), hostIfs);
      assert.ok(hostIfs.length > 1, 'the host has more than lo');
    });

    it('sets the hostname and writes it into /etc/hosts; resolv.conf is bound read-only', async () => {
      const r = await run('hostname; cat /etc/hosts; echo x >> /etc/resolv.conf || echo ro', { hostname: 'buildbox' });
      assert.equal(r.out, 'buildbox\n127.0.0.1\tlocalhost buildbox\n::1\tlocalhost ip6-localhost ip6-loopback\nro\n');
      assert.match(r.err, /Read-only file system/);
      assert.equal((await run('hostname')).out, 'strata\n');
      const h = await run('cat /etc/resolv.conf', { network: 'host' });
      assert.equal(h.out, readFileSync('/etc/resolv.conf', 'utf8'));
    });

    it('ro bind cannot be written; rw bind writes land on the host', async () => {
      writeFileSync(join(host, 'given'), 'from host\n');
      const r = await run('cat /ro/given; echo no > /ro/new || echo refused; echo yes > /rw/made', {
        mounts: [
          { type: 'bind', source: host, target: '/ro', readonly: true },
          { type: 'bind', source: host, target: '/rw', readonly: false },
        ],
      });
      assert.equal(r.out, 'from host\nrefused\n');
      assert.match(r.err, /Read-only file system/);
      assert.equal(existsSync(join(host, 'new')), false);
      assert.equal(readFileSync(join(host, 'made'), 'utf8'), 'yes\n');
    });

    it('mounts a tmpfs that leaves nothing in the rootfs', async () => {
      const r = await run('grep " /scratch " /proc/mounts | cut -d" " -f3,4; stat -c %a /scratch; echo data > /scratch/f; cat /scratch/f', {
        mounts: [{ type: 'tmpfs', target: '/scratch', size: 1 << 20, mode: 0o750 }],
      });
      assert.match(r.out, /^tmpfs rw,nosuid,.*size=1024k.*\n750\ndata\n$/);
      assert.equal(existsSync(join(ov.upper, 'scratch')), false, 'the mount point stub was removed');
    });

    it('removes mount stubs it created, keeping what the step wrote', async () => {
      const r = await run('mkdir -p /made && echo kept > /made/f', {
        mounts: [{ type: 'bind', source: host, target: '/deep/er/mnt', readonly: true }],
      });
      assert.equal(r.exitCode, 0);
      assert.equal(existsSync(join(ov.upper, 'deep')), false);
      assert.equal(existsSync(join(ov.upper, 'etc', 'hosts')), false);
      assert.equal(existsSync(join(ov.upper, 'etc', 'resolv.conf')), false);
      assert.equal(readFileSync(join(ov.upper, 'made', 'f'), 'utf8'), 'kept\n');
    });

    it('gives a directory that only received a stub its exact times back', async () => {
      const r = await run('ls /opt', { mounts: [{ type: 'bind', source: host, target: '/opt/mnt', readonly: true }] });
      assert.equal(r.out, 'mnt\ntool\n');
      const before = statSync(join(ov.lower, 'opt'), { bigint: true });
      const after = statSync(join(ov.upper, 'opt'), { bigint: true });
      assert.equal(existsSync(join(ov.upper, 'opt', 'mnt')), false);
      assert.equal(after.mtimeNs, before.mtimeNs);
    });

    it('rejects with the error of a throwing output callback, after cleaning up', async () => {
      const boom = new Error('renderer failed');
      await assert.rejects(
        run('echo one; echo two', {
          stdout: () => {
            throw boom;
          },
        }),
        (e) => e === boom,
      );
      assertNothingLeft();
    });

    it('reports a missing executable through the exit code and the runtime\'s stderr', async () => {
      const r = await run('', { args: ['/no/such/binary'] });
      assert.notEqual(r.exitCode, 0);
      assert.match(r.err, /\/no\/such\/binary/);
      assertNothingLeft();
    });

    it('abort kills a sleeping step and leaves no container or bundle', async () => {
      const ac = new AbortController();
      const out: string[] = [];
      const p = runContainer(
        {
          rootfs: ov.merged,
          args: ['/bin/sh', '-c', 'echo started; sleep 100'],
          env: [],
          cwd: '/',
          user: { uid: 0, gid: 0, additionalGids: [] },
          network: 'none',
          mounts: [],
          stdout: (b) => {
            out.push(b.toString());
            ac.abort(new Error('user pressed ^C'));
          },
          signal: ac.signal,
        },
        { runtime: rt, stateDir },
      );
      await assert.rejects(p, (e: { code?: string }) => e.code === 'ABORTED');
      assert.deepEqual(out, ['started\n']);
      assertNothingLeft();
    });

    it('abort before the container exists still cleans up', async () => {
      const ac = new AbortController();
      const p = run('sleep 100', { signal: ac.signal });
      ac.abort();
      await assert.rejects(p, (e: { code?: string }) => e.code === 'ABORTED');
      assertNothingLeft();
      await assert.rejects(run('true', { signal: AbortSignal.abort() }), (e: { code?: string }) => e.code === 'ABORTED');
    });

    it('rejects a symlinked rootfs path and a missing bind source before running', async () => {
      await assert.rejects(run('true', { rootfs: `${ov.merged}/../merged` }), (e: { code?: string }) => e.code === 'BAD_ROOTFS');
      await assert.rejects(
        run('true', { mounts: [{ type: 'bind', source: join(host, 'nope'), target: '/x', readonly: true }] }),
        (e: { code?: string }) => e.code === 'MOUNT_SOURCE_MISSING',
      );
    });
  });
}
