// Cache export and import of ~500 MB of layers, to a folder and through a loopback registry, next
// to a floor of plain `tar` and `cp` moving the same bytes; see bench/README.md.
//
//   bench/cache-transfer [--runs N=1] [--mb N=500] [--layers N=5] [--content random|text] [--json FILE] [--verbose] [--keep]
//
// Builds once (fresh store, `-o type=cacheonly`), then per run: export type=local (gzip and zstd),
// import type=local --fetch into a fresh store, export/import type=registry through a fresh loopback
// registry, and the floor. Timings are printed, never asserted.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { startRegistry, type TestRegistry } from '../test/helpers/registry.js';
import { busyboxLayout } from '../test/helpers/base-images.js';
import { checkInterrupted, onCleanup, removeTree, runCleanup } from './lib/cleanup.js';
import { repoRoot, strataCommand } from './lib/paths.js';
import { bytes, machineLine, median, secs, table } from './lib/stats.js';
import { mustSucceed, runTimed, type TimedRun } from './lib/timed-run.js';

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    mb: { type: 'string', default: '500' },
    layers: { type: 'string', default: '5' },
    content: { type: 'string', default: 'random' },
    json: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  process.stdout.write('usage: bench/cache-transfer [--ref REV] [--runs N=1] [--mb N=500] [--layers N=5] [--content random|text] [--json FILE] [--verbose] [--keep]\n');
  process.exit(0);
}
const whole = (s: string | undefined, what: string, min: number): number => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${what} wants a whole number ≥ ${min}, got ${s}`);
  return n;
};
const RUNS = whole(opt.runs, 'runs', 1);
const TOTAL_MB = whole(opt.mb, 'mb', 1);
const LAYERS = whole(opt.layers, 'layers', 1);
if (opt.content !== 'random' && opt.content !== 'text') throw new Error(`--content wants random or text, got ${opt.content}`);
const CONTENT = opt.content;

/**
 * `bytes` of text that compresses like source code or logs (gzip -6 to about a third): words
 * drawn from a small vocabulary by a seeded generator, never repeating at a distance a compressor
 * could exploit (unlike `yes`, which any compressor squeezes to nothing).
 */
function textFile(path: string, bytes: number, seed: number): void {
  const words = ['const', 'return', 'function', 'layer', 'digest', 'import', 'export', 'await', 'strata', 'cache', 'blob',
    'index', 'manifest', 'value', 'error', 'config', 'build', 'step', 'mount', 'the', 'a', 'of', 'to', 'in', 'for', '{', '}', '(', ')',
    '=', ';', '0', '1', 'if', 'else', 'let', 'this', 'new', 'true', 'false', 'null', 'string', 'number', 'Buffer', 'path', 'file'];
  let x = seed >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const fd = openSync(path, 'w');
  try {
    const block = Buffer.alloc(1 << 20);
    for (let written = 0; written < bytes;) {
      let n = 0;
      while (n < block.length - 64) {
        const r = next();
        n += block.write(words[r % words.length]!, n, 'latin1');
        block[n++] = (r >>> 8) % 9 === 0 ? 10 : 32;
        if ((r >>> 12) % 5 === 0) n += block.write(String(r % 100_000), n, 'latin1');
      }
      const take = Math.min(n, bytes - written);
      writeSync(fd, block, 0, take);
      written += take;
    }
  } finally {
    closeSync(fd);
  }
}

const log = (s: string): void => { process.stderr.write(`[bench] ${s}\n`); };

/** Which floor an operation is compared with: packing the layers into files, or copying those files. */
type Floor = 'tar' | 'cp';

interface Op {
  name: string;
  floor: Floor;
  /** Bytes the operation wrote (destination folder, registry storage, new store), for the table. */
  written: number[];
  ms: number[];
}

function duBytes(path: string): number {
  const r = spawnSync('du', ['-sb', path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`du -sb ${path} failed: ${r.stderr}`);
  return Number(r.stdout.split('\t')[0]);
}

/**
 * Forgets the compressed variants an earlier run's exports left in the store, so every run's local
 * exports compress again (the registry export still reuses what this run's gzip export made).
 */
function forgetVariants(store: string): void {
  const db = new Database(join(store, 'index.db'));
  try {
    db.pragma('busy_timeout = 10000');
    db.prepare('DELETE FROM layer_variants').run();
  } finally {
    db.close();
  }
}

/** Page cache writeback of one operation must not be charged to the next. */
function sync(): void {
  spawnSync('sync');
}

async function main(): Promise<void> {
  const root = repoRoot();
  const machine = machineLine(root);
  log(machine);
  const { cmd, args: strataArgs } = strataCommand(root);
  const work = mkdtempSync('/tmp/strata-bench-cache-transfer-');
  onCleanup(() => {
    if (opt.keep) log(`kept ${work}`);
    else removeTree(work);
  });
  const onLine = opt.verbose ? (l: { text: string }) => process.stderr.write(`  | ${l.text}\n`) : undefined;
  const strata = (args: string[]): Promise<TimedRun> => runTimed(cmd, [...strataArgs, ...args], { onLine });

  // Busybox's `head` takes no size suffix; dd writes whole MiB blocks.
  const perLayer = Math.ceil(TOTAL_MB / LAYERS);
  const ctx = join(work, 'ctx');
  mkdirSync(ctx);
  const runs = Array.from({ length: LAYERS }, (_, i) => (CONTENT === 'random'
    ? `RUN dd if=/dev/urandom of=/d${i + 1} bs=1048576 count=${perLayer} 2>/dev/null`
    : `COPY d${i + 1} /d${i + 1}`));
  if (CONTENT === 'text') for (let i = 1; i <= LAYERS; i++) textFile(join(ctx, `d${i}`), perLayer * 1048576, i);
  writeFileSync(join(ctx, 'Dockerfile'), ['FROM busybox', ...runs, ''].join('\n'));
  const layout = await busyboxLayout();
  const store = join(work, 'store');
  log(`building ${LAYERS} layers × ${perLayer} MiB of ${CONTENT === 'random' ? '/dev/urandom' : 'generated text'} into ${store}`);
  const build = mustSucceed(await strata(['build', ctx, '--root', store, '--build-context', `busybox=oci-layout://${layout}:latest`,
    '-o', 'type=cacheonly', '--progress=plain']), 'strata build');
  log(`build: ${secs(build.wallMs)}`);
  const layersDir = join(store, 'layers');
  const layerBytes = duBytes(layersDir);
  log(`store layers: ${bytes(layerBytes)} in ${layersDir}`);

  const ops = new Map<string, Op>();
  const record = (name: string, floor: Floor, run: TimedRun, written: number): void => {
    mustSucceed(run, name);
    let op = ops.get(name);
    if (!op) ops.set(name, op = { name, floor, written: [], ms: [] });
    op.ms.push(run.wallMs);
    op.written.push(written);
    log(`${name}: ${secs(run.wallMs)}, wrote ${bytes(written)}`);
  };

  for (let i = 1; i <= RUNS; i++) {
    checkInterrupted();
    const dir = join(work, `run-${i}`);
    mkdirSync(dir);
    log(`run ${i}/${RUNS}`);

    // Floor: the same layer bytes packed into one file, then that file copied to a new folder.
    const tarFile = join(dir, 'layers.tar');
    sync();
    record('floor: tar -cf - layers | cat > file', 'tar',
      await runTimed('sh', ['-c', 'tar -cf - -C "$1" . | cat > "$2"', 'sh', layersDir, tarFile]), duBytes(tarFile));
    const cpDir = join(dir, 'cp');
    mkdirSync(cpDir);
    sync();
    record('floor: cp file newdir/', 'cp', await runTimed('cp', [tarFile, cpDir]), duBytes(cpDir));

    forgetVariants(store);
    for (const compression of ['gzip', 'zstd'] as const) {
      const dest = join(dir, `local-${compression}`);
      sync();
      record(`cache export type=local (${compression})`, 'tar',
        await strata(['cache', 'export', `type=local,dest=${dest},mode=max,compression=${compression}`, '--root', store]), duBytes(dest));
      const fresh = join(dir, `store-local-${compression}`);
      sync();
      record(`cache import type=local --fetch (${compression})`, 'cp',
        await strata(['cache', 'import', `type=local,src=${dest}`, '--fetch', '--root', fresh]), duBytes(fresh));
    }

    // A fresh registry each run: blobs left from an earlier run would make the push a no-op.
    const reg: TestRegistry = await startRegistry();
    try {
      const ref = `${reg.host}/bench/cache:1`;
      sync();
      record('cache export type=registry (gzip)', 'tar',
        await strata(['cache', 'export', `type=registry,ref=${ref},mode=max`, '--root', store, '--insecure-registry', reg.host]),
        duBytes(reg.storageDir));
      const fresh = join(dir, 'store-registry');
      sync();
      record('cache import type=registry --fetch (gzip)', 'cp',
        await strata(['cache', 'import', `type=registry,ref=${ref}`, '--fetch', '--root', fresh, '--insecure-registry', reg.host]),
        duBytes(fresh));
    } finally {
      await reg.stop();
    }
    if (!opt.keep) removeTree(dir);
  }

  const mb = layerBytes / 1e6;
  const floorMs = (f: Floor): number => median(ops.get(f === 'tar' ? 'floor: tar -cf - layers | cat > file' : 'floor: cp file newdir/')!.ms);
  const rows = [...ops.values()].map((op) => {
    const ms = median(op.ms);
    return [op.name, secs(ms), (mb / (ms / 1000)).toFixed(0), `${(ms / floorMs(op.floor)).toFixed(2)}× ${op.floor}`, bytes(median(op.written))];
  });
  const both = floorMs('tar') + floorMs('cp');
  rows.push(['floor: tar + cp together', secs(both), (mb / (both / 1000)).toFixed(0), '', '']);
  process.stdout.write(`\ncache transfer: ${bytes(layerBytes)} of layers in the store (${LAYERS} layers of ${perLayer} MiB ${CONTENT} + busybox), `
    + `median of ${RUNS} run(s)\nmachine: ${machine}\n`
    + 'MB/s = store layer bytes (10^6) / seconds; exports compare with the tar floor, imports with the cp floor\n\n'
    + `${table(['operation', 'seconds', 'MB/s', 'ratio to floor', 'written'], rows)}\n`);

  if (opt.json) {
    writeFileSync(opt.json, JSON.stringify({ machine, date: new Date().toISOString(), content: CONTENT, layerBytes, buildMs: build.wallMs, ops: [...ops.values()] }, null, 2) + '\n');
    log(`wrote ${opt.json}`);
  }
}

try {
  await main();
} catch (e) {
  process.stderr.write(`cache-transfer: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await runCleanup();
}
