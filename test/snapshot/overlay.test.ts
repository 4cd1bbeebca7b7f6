import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mountOverlay, unmountOverlay, volatileMarker } from '../../src/snapshot/overlay.js';
import { isStrataError } from '../../src/errors.js';
import { isMounted, isRoot, tempDir } from './helpers.js';

const skip = !isRoot && 'needs root';

function superOptions(target: string): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === target);
  assert.ok(line, `${target} is mounted`);
  return line.split(' - ')[1]!.split(' ')[2]!;
}

/** Newer kernels list the option as fsync=volatile. */
function isVolatile(opts: string): boolean {
  return opts.split(',').some((o) => o === 'volatile' || o === 'fsync=volatile');
}

/** n lower dirs under parent, each holding its own file and a shared one written by all. */
function makeLowers(parent: string, n: number, name: (i: number) => string): string[] {
  const lowers: string[] = [];
  for (let i = 0; i < n; i++) {
    const dir = join(parent, name(i));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `own-${i}`), String(i));
    writeFileSync(join(dir, 'shared'), String(i));
    lowers.push(dir);
  }
  return lowers;
}

test('mountOverlay stacks lowers top-most first, writes go to the upper, options are pinned', { skip }, async () => {
  const t = tempDir('ovl');
  try {
    const lowers = makeLowers(t.dir, 3, (i) => `l${i}`);
    const target = join(t.dir, 'merged');
    await mountOverlay({ lowers, upper: join(t.dir, 'upper'), work: join(t.dir, 'work'), target });
    try {
      assert.equal(readFileSync(join(target, 'shared'), 'utf8'), '0');
      assert.deepEqual(readdirSync(target).sort(), ['own-0', 'own-1', 'own-2', 'shared']);
      writeFileSync(join(target, 'new'), 'n');
      assert.equal(readFileSync(join(t.dir, 'upper', 'new'), 'utf8'), 'n');
      const opts = superOptions(target);
      // the kernel lists only non-default options; none of these may be on
      for (const o of ['index=on', 'redirect_dir=on', 'redirect_dir=follow', 'metacopy=on']) assert.ok(!opts.split(',').includes(o), `${o} in ${opts}`);
      // build mounts skip the upper's sync on unmount
      assert.ok(isVolatile(opts), `volatile missing from ${opts}`);
    } finally {
      await unmountOverlay(target);
    }
    assert.equal(isMounted(target), false);
    // unmounting again is not an error
    await unmountOverlay(target);
  } finally {
    t.cleanup();
  }
});

test('a volatile mount leaves its marker; the next mount of the same upper and work dir removes it and works', { skip }, async () => {
  const t = tempDir('ovlvol');
  try {
    const [lower] = makeLowers(t.dir, 1, () => 'l');
    const upper = join(t.dir, 'upper');
    const work = join(t.dir, 'work');
    const target = join(t.dir, 'merged');
    await mountOverlay({ lowers: [lower!], upper, work, target });
    writeFileSync(join(target, 'first'), '1');
    await unmountOverlay(target);
    // what the kernel leaves behind, and what would make it refuse the work dir again
    assert.ok(existsSync(join(volatileMarker(work), 'volatile')), 'the kernel marks the work dir of a volatile mount');
    await mountOverlay({ lowers: [lower!], upper, work, target });
    try {
      assert.equal(isMounted(target), true);
      assert.equal(readFileSync(join(target, 'first'), 'utf8'), '1');
      writeFileSync(join(target, 'second'), '2');
    } finally {
      await unmountOverlay(target);
    }
    assert.deepEqual(readdirSync(upper).sort(), ['first', 'second']);
    // a durable mount of the same dirs: no volatile option, no marker left
    await mountOverlay({ lowers: [lower!], upper, work, target, durable: true });
    try {
      assert.equal(isVolatile(superOptions(target)), false);
    } finally {
      await unmountOverlay(target);
    }
    assert.equal(existsSync(volatileMarker(work)), false);
  } finally {
    t.cleanup();
  }
});

test('mountOverlay works with zero lowers', { skip }, async () => {
  const t = tempDir('ovl0');
  try {
    const target = join(t.dir, 'merged');
    await mountOverlay({ lowers: [], upper: join(t.dir, 'upper'), work: join(t.dir, 'work'), target });
    try {
      assert.deepEqual(readdirSync(target), []);
      mkdirSync(join(target, 'd'));
      writeFileSync(join(target, 'd', 'f'), 'x');
      assert.equal(readFileSync(join(t.dir, 'upper', 'd', 'f'), 'utf8'), 'x');
    } finally {
      await unmountOverlay(target);
    }
  } finally {
    t.cleanup();
  }
});

test('mountOverlay handles option strings over 4096 bytes (relative paths)', { skip }, async () => {
  const t = tempDir('ovlrel');
  try {
    // long common prefix, short names: relative to the prefix the string fits
    const store = join(t.dir, 'x'.repeat(200));
    const lowers = makeLowers(store, 40, (i) => `layers/${i}`);
    assert.ok(lowers.join(':').length > 4096);
    const target = join(t.dir, 'merged');
    await mountOverlay({ lowers, upper: join(store, 'up'), work: join(store, 'wk'), target });
    try {
      assert.equal(readFileSync(join(target, 'shared'), 'utf8'), '0');
      assert.equal(readFileSync(join(target, 'own-39'), 'utf8'), '39');
      assert.equal(readdirSync(target).length, 41);
    } finally {
      await unmountOverlay(target);
    }
  } finally {
    t.cleanup();
  }
});

test('mountOverlay handles 500 lowers of long, unrelated paths (short symlinks)', { skip }, async () => {
  const t = tempDir('ovl500');
  try {
    const lowers = makeLowers(t.dir, 500, (i) => `${String(i).padStart(3, '0')}-${'y'.repeat(90)}`);
    const target = join(t.dir, 'merged');
    await mountOverlay({ lowers, upper: join(t.dir, 'upper'), work: join(t.dir, 'work'), target });
    try {
      assert.equal(readFileSync(join(target, 'shared'), 'utf8'), '0');
      assert.equal(readFileSync(join(target, 'own-499'), 'utf8'), '499');
      assert.equal(readdirSync(target).length, 501);
    } finally {
      await unmountOverlay(target);
    }
    // the temporary symlinks are gone
    assert.deepEqual(readdirSync(t.dir).filter((n) => n.startsWith('.strata-lowers-')), []);
  } finally {
    t.cleanup();
  }
});

test('mountOverlay refuses more than 500 lowers with a clear error', { skip }, async () => {
  const t = tempDir('ovl501');
  try {
    const lowers = makeLowers(t.dir, 501, (i) => `l${i}`);
    const target = join(t.dir, 'merged');
    await assert.rejects(mountOverlay({ lowers, upper: join(t.dir, 'upper'), work: join(t.dir, 'work'), target }), (e: unknown) => {
      assert.ok(isStrataError(e));
      assert.equal(e.code, 'TOO_MANY_LAYERS');
      assert.match(e.message, /501 layers.*at most 500/);
      return true;
    });
    assert.equal(isMounted(target), false);
  } finally {
    t.cleanup();
  }
});

test('mountOverlay reports a failed mount with the reason', { skip }, async () => {
  const t = tempDir('ovlfail');
  try {
    const target = join(t.dir, 'merged');
    await assert.rejects(
      mountOverlay({ lowers: [join(t.dir, 'missing')], upper: join(t.dir, 'upper'), work: join(t.dir, 'work'), target }),
      (e: unknown) => isStrataError(e) && e.code === 'MOUNT_FAILED' && e.message.includes(target),
    );
    await assert.rejects(
      mountOverlay({ lowers: [join(t.dir, 'a,b')], upper: join(t.dir, 'upper'), work: join(t.dir, 'work'), target }),
      (e: unknown) => isStrataError(e) && e.code === 'BAD_MOUNT_PATH',
    );
  } finally {
    t.cleanup();
  }
});

test('unmountOverlay detaches a mount that stays busy', { skip }, async () => {
  const t = tempDir('ovlbusy');
  try {
    const lower = join(t.dir, 'lower');
    mkdirSync(lower);
    const target = join(t.dir, 'merged');
    await mountOverlay({ lowers: [lower], upper: join(t.dir, 'upper'), work: join(t.dir, 'work'), target });
    const holder = spawn('sleep', ['60'], { cwd: target, stdio: 'ignore' });
    const gone = new Promise((r) => holder.once('exit', r));
    try {
      await new Promise((r) => setTimeout(r, 100));
      await unmountOverlay(target);
      assert.equal(isMounted(target), false);
      assert.ok(existsSync(target));
    } finally {
      holder.kill('SIGKILL');
      await gone;
    }
  } finally {
    t.cleanup();
  }
});
