// Dockerfile instruction semantics, observed from inside the built container (a RUN writes what it
// sees, `-o type=local` brings the files out) and in the image config blob.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StrataEnv, busyboxArgs, envValue, expectOk, instructionSteps, parseProgress, readLayout } from './harness.js';

const read = (dir: string, p: string) => readFileSync(join(dir, p), 'utf8');

test('ENV, ARG scoping, USER, WORKDIR, SHELL and heredoc RUN as seen inside the container', async (t) => {
  const env = new StrataEnv('strata-e2e-instr-');
  t.after(() => env.cleanup());
  const ctx = env.context('ctx', {
    Dockerfile: `ARG BASE=no-such-image-unless-overridden
ARG META=meta-default
ARG OVERRIDDEN=meta-default
ARG NOT_REDECLARED=meta-only
FROM \${BASE}
ARG META
ARG OVERRIDDEN
ARG INSTAGE=instage-default
ENV a=1
ENV a=2 b=$a
ENV quoted="hello world"
RUN mkdir /out && echo "a=$a b=$b quoted=$quoted" > /out/env \\
 && echo "META=$META OVERRIDDEN=$OVERRIDDEN INSTAGE=$INSTAGE NOT_REDECLARED=[$NOT_REDECLARED]" > /out/args
ARG LATE=late-default
RUN echo "LATE=$LATE" > /out/late && env | sort > /out/fullenv
WORKDIR rel
RUN pwd > /out/pwd-rel
WORKDIR /abs/dir
WORKDIR sub
RUN pwd > /out/pwd-sub
WORKDIR /never/used/by/run
WORKDIR /
USER nobody
RUN id > /tmp/id-name
USER 1234:5678
RUN id > /tmp/id-uidgid
USER app
WORKDIR /home/app/made-by-app
USER root
RUN cp /tmp/id-name /tmp/id-uidgid /out/ && stat -c '%u:%g' /home/app/made-by-app > /out/workdir-owner
SHELL ["/bin/sh", "-c", "echo custom-shell-used > /out/shell; eval \\"$1\\"", "shellname"]
RUN echo "ran through the custom shell" > /out/shell-cmd
SHELL ["/bin/sh", "-c"]
RUN <<EOF
echo "heredoc script line 1" > /out/heredoc-script
echo "heredoc script line 2 a=$a" >> /out/heredoc-script
EOF
RUN cat <<EOF > /out/heredoc-cat
cat heredoc b=$b
EOF
`,
  });
  const out = join(env.root, 'out');
  const r = expectOk(
    await env.build(ctx, [...(await busyboxArgs()), '--build-arg', 'BASE=busybox', '--build-arg', 'OVERRIDDEN=from-cli', '--build-arg', 'LATE=late-cli', '-o', `type=local,dest=${out}`]),
    'build',
  );
  assert.ok(instructionSteps(parseProgress(r.stderr)).length > 5);

  // ENV: the second ENV's b=$a sees the OLD a.
  assert.equal(read(out, 'out/env'), 'a=2 b=1 quoted=hello world\n');
  // ARG: meta ARGs need re-declaring (NOT_REDECLARED is empty in the stage), --build-arg wins over
  // both the meta default and the stage, and ARGs reach RUN's environment.
  assert.equal(read(out, 'out/args'), 'META=meta-default OVERRIDDEN=from-cli INSTAGE=instage-default NOT_REDECLARED=[]\n');
  assert.equal(read(out, 'out/late'), 'LATE=late-cli\n');
  const fullEnv = read(out, 'out/fullenv').split('\n');
  for (const want of ['a=2', 'b=1', 'quoted=hello world', 'META=meta-default', 'LATE=late-cli', 'HOME=/root']) {
    assert.ok(fullEnv.includes(want), `RUN env lacks ${want}:\n${fullEnv.join('\n')}`);
  }
  assert.ok(!fullEnv.some((l) => l.startsWith('NOT_REDECLARED=')));
  // WORKDIR: relative to the previous one, created even when no RUN uses it, owned by USER.
  assert.equal(read(out, 'out/pwd-rel'), '/rel\n');
  assert.equal(read(out, 'out/pwd-sub'), '/abs/dir/sub\n');
  assert.ok(statSync(join(out, 'never/used/by/run')).isDirectory());
  assert.equal(read(out, 'out/workdir-owner'), '1000:1000\n');
  // USER by name and by uid:gid (unknown to /etc/passwd).
  assert.match(read(out, 'out/id-name'), /^uid=65534\(nobody\) gid=65534\(nogroup\)/);
  assert.match(read(out, 'out/id-uidgid'), /^uid=1234 gid=5678/);
  // SHELL replaces /bin/sh -c for shell-form RUN.
  assert.equal(read(out, 'out/shell'), 'custom-shell-used\n');
  assert.equal(read(out, 'out/shell-cmd'), 'ran through the custom shell\n');
  // Heredocs: a script fed to the shell, and a heredoc as a command's stdin.
  assert.equal(read(out, 'out/heredoc-script'), 'heredoc script line 1\nheredoc script line 2 a=2\n');
  assert.equal(read(out, 'out/heredoc-cat'), 'cat heredoc b=1\n');
});

test('CMD, ENTRYPOINT, EXPOSE, VOLUME, LABEL, STOPSIGNAL, HEALTHCHECK, ONBUILD in the config; ONBUILD runs in a child', async (t) => {
  const env = new StrataEnv('strata-e2e-config-');
  t.after(() => env.cleanup());
  const parentCtx = env.context('parent', {
    Dockerfile: `FROM busybox
ENTRYPOINT ["/bin/echo", "ep"]
CMD ["c1", "c2"]
EXPOSE 8080 53/udp 9000-9001
VOLUME /data /logs
VOLUME ["/json-form"]
LABEL org.test.a="A value" b=2
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD wget -q localhost || exit 1
USER app
WORKDIR /home/app
ENV MODE=prod
ONBUILD RUN echo "onbuild trigger ran as $(id -un) in $(pwd)" > /tmp/onbuild.txt
ONBUILD ENV FROM_ONBUILD=yes
`,
  });
  const ociDir = join(env.root, 'parent-oci');
  expectOk(await env.build(parentCtx, [...(await busyboxArgs()), '-t', 'e2e-parent:1', '-o', `type=oci,dest=${ociDir},tar=false`, '-o', 'type=image']), 'parent build');
  const parent = readLayout(ociDir, '1');
  const c = parent.config.config!;
  assert.deepEqual(c.Entrypoint, ['/bin/echo', 'ep']);
  assert.deepEqual(c.Cmd, ['c1', 'c2']);
  assert.deepEqual(c.ExposedPorts, { '8080/tcp': {}, '53/udp': {}, '9000/tcp': {}, '9001/tcp': {} });
  assert.deepEqual(c.Volumes, { '/data': {}, '/logs': {}, '/json-form': {} });
  assert.deepEqual(c.Labels, { 'org.test.a': 'A value', b: '2' });
  assert.equal(c.StopSignal, 'SIGQUIT');
  assert.deepEqual(c.Healthcheck, { Test: ['CMD-SHELL', 'wget -q localhost || exit 1'], Interval: 5e9, Timeout: 2e9, Retries: 4 });
  assert.deepEqual(c.OnBuild, ['RUN echo "onbuild trigger ran as $(id -un) in $(pwd)" > /tmp/onbuild.txt', 'ENV FROM_ONBUILD=yes']);
  assert.equal(c.User, 'app');
  assert.equal(c.WorkingDir, '/home/app');
  assert.equal(envValue(c.Env, 'MODE'), 'prod');
  assert.equal(parent.config.architecture, 'amd64');
  assert.equal(parent.config.os, 'linux');
  // Metadata-only instructions add history entries but no layers.
  const own = parent.config.history!.slice(1);
  assert.ok(own.every((h) => h.empty_layer === true), JSON.stringify(own));
  assert.equal(parent.config.rootfs.diff_ids.length, 1);

  // ENTRYPOINT without a later CMD drops the base image's CMD.
  const epCtx = env.context('ep', { Dockerfile: 'FROM busybox\nENTRYPOINT ["/bin/sh"]\n' });
  const epDir = join(env.root, 'ep-oci');
  expectOk(await env.build(epCtx, [...(await busyboxArgs()), '-o', `type=oci,dest=${epDir},tar=false`]), 'entrypoint build');
  const ep = readLayout(epDir).config.config!;
  assert.deepEqual(ep.Entrypoint, ['/bin/sh']);
  assert.equal(ep.Cmd, undefined);

  // A child FROM the parent (kept in the store by type=image) runs its triggers first.
  const childCtx = env.context('child', {
    Dockerfile: 'FROM e2e-parent:1\nUSER root\nRUN cp /tmp/onbuild.txt /onbuild.txt && echo "FROM_ONBUILD=$FROM_ONBUILD" > /child.txt\n',
  });
  const childOut = join(env.root, 'child-out');
  const childOci = join(env.root, 'child-oci');
  const r = expectOk(await env.build(childCtx, ['-o', `type=local,dest=${childOut}`, '-o', `type=oci,dest=${childOci},tar=false`]), 'child build');
  const steps = instructionSteps(parseProgress(r.stderr));
  assert.ok(steps[0]!.name.includes('RUN echo "onbuild trigger ran'), `the trigger runs first:\n${r.stderr}`);
  assert.equal(readFileSync(join(childOut, 'onbuild.txt'), 'utf8'), 'onbuild trigger ran as app in /home/app\n');
  assert.equal(readFileSync(join(childOut, 'child.txt'), 'utf8'), 'FROM_ONBUILD=yes\n');
  const child = readLayout(childOci).config.config!;
  assert.equal(child.OnBuild, undefined, 'triggers are consumed, not inherited');
  assert.equal(envValue(child.Env, 'FROM_ONBUILD'), 'yes');
  assert.deepEqual(child.Entrypoint, ['/bin/echo', 'ep']);
});
