// Typed instructions: arguments and flags checked as BuildKit's instructions package does, with its
// messages and the instruction's position; strata's cache TTL flag and comment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../../src/dockerfile/parser.js';
import { toInstructions } from '../../src/dockerfile/instructions.js';
import type { Instruction } from '../../src/dockerfile/instructions-types.js';
import { StrataError } from '../../src/errors.js';

const typed = (text: string): Instruction[] => toInstructions(parseDockerfile(text));
const last = (text: string): Instruction => {
  const list = typed(text);
  return list[list.length - 1]!;
};

function refused(text: string): StrataError {
  try {
    toInstructions(parseDockerfile(text));
  } catch (e) {
    assert.ok(e instanceof StrataError, String(e));
    return e;
  }
  assert.fail(`should be refused: ${text}`);
}

const msg = (text: string): string => refused(text).message;

test('FROM: image, stage name, platform', () => {
  assert.deepEqual(last('FROM --platform=$BUILDPLATFORM golang:1.22 AS Build'), {
    kind: 'from',
    original: 'FROM --platform=$BUILDPLATFORM golang:1.22 AS Build',
    startLine: 1,
    endLine: 1,
    image: 'golang:1.22',
    stageName: 'build',
    platform: '$BUILDPLATFORM',
  });
  assert.equal((last('FROM x as y') as { stageName?: string }).stageName, 'y');
  assert.equal(msg('FROM'), 'FROM requires either one or three arguments');
  assert.equal(msg('FROM a b'), 'FROM requires either one or three arguments');
  assert.equal(msg('FROM a TO b'), 'FROM requires either one or three arguments');
  assert.equal(msg('FROM a AS 1st'), 'invalid name for build stage: "1st", name can\'t start with a number or contain symbols');
  assert.equal(msg('FROM a AS b$c'), 'invalid name for build stage: "b$c", name can\'t start with a number or contain symbols');
  assert.equal(msg('FROM --foo=x a'), 'unknown flag: --foo');
  assert.equal(msg('FROM --platfrom=x a'), 'unknown flag: --platfrom (did you mean platform?)');
});

test('RUN: command forms, mounts, network, security, devices', () => {
  const r = last('FROM x\nRUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=a --network=none --security=insecure go build ./...');
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') return;
  assert.deepEqual(r.command, { args: ['go build ./...'], shellForm: true });
  assert.deepEqual(r.mounts, ['type=cache,target=/root/.cache', 'type=secret,id=a']);
  assert.equal(r.network, 'none');
  assert.equal(r.security, 'insecure');

  const e = last('FROM x\nRUN ["echo", "a b"]');
  assert.ok(e.kind === 'run' && !e.command.shellForm);
  assert.deepEqual(e.kind === 'run' && e.command.args, ['echo', 'a b']);
  const plain = last('FROM x\nRUN true');
  assert.ok(plain.kind === 'run' && plain.network === undefined && plain.security === undefined && plain.mounts.length === 0);

  assert.equal(msg('FROM x\nRUN --network=bridge true'), 'invalid network mode "bridge"');
  assert.equal(msg('FROM x\nRUN --security=root true'), 'security "root" is not valid');
  assert.equal(msg('FROM x\nRUN --network true'), 'missing a value on flag: --network');
  assert.equal(msg('FROM x\nRUN --network=host --network=none true'), 'duplicate flag specified: --network');
  assert.equal(msg('FROM x\nRUN --mont=type=cache true'), 'unknown flag: --mont (did you mean mount?)');
  assert.equal(msg('FROM x\nRUN --mount=type=cache,z true'), "invalid field 'z' must be a key=value pair");
  assert.equal(msg('FROM x\nRUN --mount=from=$STAGE,target=/x true'), "'from' doesn't support variable expansion, define alias stage instead");
  assert.equal(msg('FROM x\nRUN --mount=type=x\\"y true'), 'failed to parse csv mounts: bare " in non-quoted-field');
  assert.equal(msg('FROM x\nRUN --mount=\\"type=x\\"y true'), 'failed to parse csv mounts: extraneous or missing " in quoted-field');
  const quoted = last('FROM x\nRUN --mount=\\"target=/a,b\\",type=cache true');
  assert.ok(quoted.kind === 'run' && quoted.mounts[0] === '"target=/a,b",type=cache');
  const ro = last('FROM x\nRUN --mount=type=bind,ro,target=/x true');
  assert.ok(ro.kind === 'run' && ro.mounts[0] === 'type=bind,ro,target=/x');
  const dev = last('FROM x\nRUN --device=vendor.com/gpu=0 true');
  assert.deepEqual(dev.kind === 'run' && dev.devices, ['vendor.com/gpu=0']);
});

test('RUN heredocs become part of the instruction', () => {
  const r = last('FROM x\nRUN <<EOF bash\necho $HOME\nEOF\n');
  assert.ok(r.kind === 'run');
  if (r.kind !== 'run') return;
  assert.deepEqual(r.command, { args: ['<<EOF bash'], shellForm: true });
  assert.equal(r.heredocs.length, 1);
  assert.equal(r.heredocs[0]!.content, 'echo $HOME\n');
  assert.equal(r.endLine, 4);
});

test('COPY and ADD: sources, destination, flags', () => {
  const c = last('FROM x\nCOPY --from=build --chown=1:2 --chmod=0755 --link --parents --exclude=*.md --exclude=.git a b /dst/');
  assert.equal(c.kind, 'copy');
  if (c.kind !== 'copy') return;
  assert.deepEqual(c.sources, ['a', 'b']);
  assert.equal(c.dest, '/dst/');
  assert.equal(c.from, 'build');
  assert.equal(c.chown, '1:2');
  assert.equal(c.chmod, '0755');
  assert.equal(c.link, true);
  assert.equal(c.parents, true);
  assert.deepEqual(c.excludes, ['*.md', '.git']);

  const a = last('FROM x\nADD --checksum=sha256:abc --keep-git-dir=false --unpack=TRUE https://x/y.tgz /z');
  assert.equal(a.kind, 'add');
  if (a.kind !== 'add') return;
  assert.equal(a.checksum, 'sha256:abc');
  assert.equal(a.keepGitDir, false);
  assert.equal(a.unpack, true);
  assert.equal(a.link, false);
  const a2 = last('FROM x\nADD a b');
  assert.ok(a2.kind === 'add' && a2.keepGitDir === undefined && a2.unpack === undefined);

  const j = last('FROM x\nCOPY ["a b", "c"]');
  assert.ok(j.kind === 'copy' && j.sources[0] === 'a b' && j.dest === 'c');

  const h = last('FROM x\nCOPY <<one <<two /dest/\n1\none\n2\ntwo\n');
  assert.ok(h.kind === 'copy');
  if (h.kind !== 'copy') return;
  assert.deepEqual(h.sources, ['<<one', '<<two']);
  assert.deepEqual(
    h.heredocs.map((x) => [x.name, x.content]),
    [
      ['one', '1\n'],
      ['two', '2\n'],
    ],
  );

  assert.equal(msg('FROM x\nCOPY a'), 'COPY requires at least two arguments, but only one was provided. Destination could not be determined');
  assert.equal(msg('FROM x\nADD a'), 'ADD requires at least two arguments, but only one was provided. Destination could not be determined');
  assert.equal(msg('FROM x\nCOPY a <<EOF\nx\nEOF'), 'COPY cannot accept a heredoc as a destination');
  assert.equal(msg('FROM x\nCOPY --link=maybe a b'), 'expecting boolean value for flag --link, not: maybe');
  assert.equal(msg('FROM x\nCOPY --link= a b'), 'missing a value on flag: --link');
  assert.equal(msg('FROM x\nCOPY --chmod a b'), 'missing a value on flag: --chmod');
  assert.equal(msg('FROM x\nCOPY --checksum=x a b'), 'unknown flag: --checksum');
  assert.equal(msg('FROM x\nADD --from=x a b'), 'unknown flag: --from');
  assert.equal(msg('FROM x\nADD --parents a b'), 'unknown flag: --parents');
  assert.equal(msg('FROM x\nCOPY --from=a --from=b a b'), 'duplicate flag specified: --from');
});

test('strata cache TTL: flag or the comment line before the instruction', () => {
  const f = last('FROM x\nRUN --cache-ttl=24h apt-get update');
  assert.ok(f.kind === 'run' && f.cacheTtl === '24h');
  const c = last('FROM x\n# strata:cache-ttl=7d\nRUN apt-get update');
  assert.ok(c.kind === 'run' && c.cacheTtl === '7d');
  const both = last('FROM x\n# strata:cache-ttl=7d\nADD --cache-ttl=1h https://x/y /y');
  assert.ok(both.kind === 'add' && both.cacheTtl === '1h');
  const copy = last('FROM x\n  # strata:cache-ttl = 30m\nCOPY a b');
  assert.ok(copy.kind === 'copy' && copy.cacheTtl === '30m');
  // Only the comments of the instruction's own block count.
  const none = last('FROM x\n# strata:cache-ttl=7d\nRUN a\nRUN b');
  assert.ok(none.kind === 'run' && none.cacheTtl === undefined);
  assert.match(msg('FROM x\nRUN --cache-ttl=soon true'), /^invalid --cache-ttl value "soon": time: invalid duration "soon"$/);
  assert.match(msg('FROM x\n# strata:cache-ttl=5y\nRUN true'), /^invalid # strata:cache-ttl value "5y": time: unknown unit "y"/);
  assert.equal(msg('FROM x\nENV --cache-ttl=1h a=b'), 'unknown flag: --cache-ttl');
});

test('ENV, LABEL, ARG', () => {
  const env = last('FROM x\nENV A=1 B="two words" C=');
  assert.deepEqual(env.kind === 'env' && env.pairs, [
    { key: 'A', value: '1' },
    { key: 'B', value: '"two words"' },
    { key: 'C', value: '' },
  ]);
  const legacy = last('FROM x\nENV PATH /usr/bin:/bin');
  assert.ok(legacy.kind === 'env' && legacy.legacy === true);
  assert.deepEqual(legacy.kind === 'env' && legacy.pairs, [{ key: 'PATH', value: '/usr/bin:/bin' }]);
  const label = last('FROM x\nLABEL a=b');
  assert.equal(label.kind, 'label');
  assert.equal(msg('FROM x\nENV'), 'ENV requires at least one argument');
  assert.equal(msg('FROM x\nLABEL =x'), 'LABEL names can not be blank');
  assert.equal(msg('FROM x\nENV --x a=b'), 'unknown flag: --x');

  const arg = typed('ARG V=1\nARG A B=\nFROM x');
  assert.deepEqual(arg[0]!.kind === 'arg' && arg[0]!.args, [{ key: 'V', value: '1' }]);
  assert.deepEqual(arg[1]!.kind === 'arg' && arg[1]!.args, [{ key: 'A' }, { key: 'B', value: '' }]);
  assert.equal(msg('ARG'), 'ARG requires at least one argument');
  assert.equal(msg('ARG =x'), 'ARG names can not be blank');
});

test('CMD, ENTRYPOINT, SHELL, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL, MAINTAINER', () => {
  const list = typed(
    'FROM x\nCMD ["a", "b"]\nENTRYPOINT exec run\nSHELL ["pwsh", "-c"]\nWORKDIR /app\nUSER 1000:1000\n' +
      'EXPOSE 8080/tcp 443 80\nVOLUME [" /data ", "/b"]\nSTOPSIGNAL SIGTERM\nMAINTAINER me <me@x>',
  );
  assert.deepEqual(
    list.map((i) => i.kind),
    ['from', 'cmd', 'entrypoint', 'shell', 'workdir', 'user', 'expose', 'volume', 'stopsignal', 'maintainer'],
  );
  const [, cmd, ep, shell, wd, user, expose, volume, sig, mnt] = list;
  assert.deepEqual(cmd!.kind === 'cmd' && cmd!.command, { args: ['a', 'b'], shellForm: false });
  assert.deepEqual(ep!.kind === 'entrypoint' && ep!.command, { args: ['exec run'], shellForm: true });
  assert.deepEqual(shell!.kind === 'shell' && shell!.shell, ['pwsh', '-c']);
  assert.ok(wd!.kind === 'workdir' && wd!.path === '/app');
  assert.ok(user!.kind === 'user' && user!.user === '1000:1000');
  assert.deepEqual(expose!.kind === 'expose' && expose!.ports, ['443', '80', '8080/tcp']);
  assert.deepEqual(volume!.kind === 'volume' && volume!.paths, ['/data', '/b']);
  assert.ok(sig!.kind === 'stopsignal' && sig!.signal === 'SIGTERM');
  assert.ok(mnt!.kind === 'maintainer' && mnt!.name === 'me <me@x>');

  assert.deepEqual(last('FROM x\nCMD []').kind === 'cmd' && (last('FROM x\nCMD []') as { command: unknown }).command, {
    args: [],
    shellForm: false,
  });
  assert.equal(msg('FROM x\nSHELL sh -c'), 'SHELL requires the arguments to be in JSON form');
  assert.equal(msg('FROM x\nSHELL []'), 'SHELL requires at least one argument');
  assert.equal(msg('FROM x\nWORKDIR'), 'WORKDIR requires exactly one argument');
  assert.equal(msg('FROM x\nUSER'), 'USER requires exactly one argument');
  assert.equal(msg('FROM x\nEXPOSE'), 'EXPOSE requires at least one argument');
  assert.equal(msg('FROM x\nVOLUME'), 'VOLUME requires at least one argument');
  assert.equal(msg('FROM x\nVOLUME [""]'), 'VOLUME specified can not be an empty string');
  assert.equal(msg('FROM x\nSTOPSIGNAL'), 'STOPSIGNAL requires exactly one argument');
  assert.equal(msg('FROM x\nMAINTAINER'), 'MAINTAINER requires exactly one argument');
  assert.equal(msg('FROM x\nCMD --x a'), 'unknown flag: --x');
});

test('HEALTHCHECK', () => {
  const h = last('FROM x\nHEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=2s --retries=3 CMD curl -f http://x/');
  assert.deepEqual(h, {
    kind: 'healthcheck',
    original: 'HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=2s --retries=3 CMD curl -f http://x/',
    startLine: 2,
    endLine: 2,
    test: ['CMD-SHELL', 'curl -f http://x/'],
    interval: '30s',
    timeout: '3s',
    startPeriod: '1m',
    startInterval: '2s',
    retries: 3,
  });
  assert.deepEqual((last('FROM x\nHEALTHCHECK cmd ["a", "b"]') as { test: string[] }).test, ['CMD', 'a', 'b']);
  assert.deepEqual((last('FROM x\nHEALTHCHECK none') as { test: string[] }).test, ['NONE']);
  assert.equal(msg('FROM x\nHEALTHCHECK'), 'HEALTHCHECK requires at least one argument');
  assert.equal(msg('FROM x\nHEALTHCHECK NONE x'), 'HEALTHCHECK NONE takes no arguments');
  assert.equal(msg('FROM x\nHEALTHCHECK CMD'), 'Missing command after HEALTHCHECK CMD');
  assert.equal(msg('FROM x\nHEALTHCHECK CONNECT x'), 'Unknown type "CONNECT" in HEALTHCHECK (try CMD)');
  assert.equal(msg('FROM x\nHEALTHCHECK --interval=10 CMD x'), 'time: missing unit in duration "10"');
  assert.equal(msg('FROM x\nHEALTHCHECK --interval=1us CMD x'), 'Interval "interval" cannot be less than 1ms');
  assert.equal(msg('FROM x\nHEALTHCHECK --retries=-1 CMD x'), '--retries cannot be negative (-1)');
  assert.equal(msg('FROM x\nHEALTHCHECK --retries=x CMD x'), 'strconv.ParseInt: parsing "x": invalid syntax');
  assert.equal(msg('FROM x\nHEALTHCHECK --retries=9999999999 CMD x'), 'strconv.ParseInt: parsing "9999999999": value out of range');
  assert.equal(msg('FROM x\nHEALTHCHECK --intervl=1s CMD x'), 'unknown flag: --intervl (did you mean interval?)');
});

test('ONBUILD keeps the trigger text', () => {
  const o = last('FROM x\nONBUILD   RUN echo "hi"');
  assert.ok(o.kind === 'onbuild' && o.expression === 'RUN echo "hi"');
  const h = last('FROM x\nonbuild RUN <<-EOF\n\techo hi\nEOF\n');
  assert.ok(h.kind === 'onbuild' && h.expression === 'RUN <<-EOF\n\techo hi\nEOF');
  assert.equal(msg('FROM x\nONBUILD'), 'ONBUILD requires at least one argument');
  assert.equal(msg('FROM x\nONBUILD ONBUILD RUN x'), 'Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
  assert.equal(msg('FROM x\nONBUILD from y'), "FROM isn't allowed as an ONBUILD trigger");
  assert.equal(msg('FROM x\nONBUILD MAINTAINER y'), "MAINTAINER isn't allowed as an ONBUILD trigger");
});

test('unknown instructions: suggestion and the keyword as written', () => {
  assert.equal(msg('FROM x\nFNTRYPOINT ["/x"]'), 'unknown instruction: FNTRYPOINT (did you mean ENTRYPOINT?)');
  assert.equal(msg('FROM x\nfntrypoint ["/x"]'), 'unknown instruction: fntrypoint (did you mean entrypoint?)');
  assert.equal(msg('FROM x\nFOO bar'), 'unknown instruction: FOO (did you mean FROM?)');
  assert.equal(msg('FROM x\nfoo bar'), 'unknown instruction: foo (did you mean from?)');
  assert.equal(msg('FROM x\nBOGUS bar'), 'unknown instruction: BOGUS');
});

test('errors carry the file and the instruction lines', () => {
  let err: unknown;
  try {
    toInstructions(parseDockerfile('FROM x\nRUN \\\n  --foo=1 \\\n  true', 'build/Dockerfile.dev'));
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof StrataError);
  assert.equal(err.code, 'DOCKERFILE_INSTRUCTION');
  assert.deepEqual(err.position, { file: 'build/Dockerfile.dev', line: 2, endLine: 4 });
  assert.equal(err.where(), 'build/Dockerfile.dev:2: unknown flag: --foo');
});
