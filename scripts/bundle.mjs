// Bundles the compiled CLI (dist/src) into one CommonJS file, dist/bundle/strata.cjs, that bin/strata
// runs with a V8 code cache. Why: resolving and compiling ~70 ES modules on every start cost about
// 50 ms of a 230 ms no-change build; one file compiled from a code cache costs a few ms.
// Run after tsc (make setup / make build / npm run build do).
//
// The bundle is CommonJS because only a classic script can be compiled with V8 cached data on
// Node 20 (vm.Script); ES modules have no such hook before Node 22. Two things a classic script
// lacks are supplied by bin/strata: `import.meta.url` (the copy-worker thread is found next to the
// bundle) and dynamic `import()` of ES-only packages (fs-xattr), through a global it defines.
// Static imports of fs-xattr become require() of an ES module, which Node does from 20.19 on;
// bin/strata runs the modules on an older Node.
import { build } from 'esbuild';
import { readFileSync, renameSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, 'dist', 'bundle');
/** Native addons stay in node_modules (their .node files load from there). */
const external = ['better-sqlite3', 'fs-xattr'];

const tmp = join(root, 'dist', `.bundle-${process.pid}`);
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
try {
  await build({
    entryPoints: [join(root, 'dist/src/cli/main.js')],
    outfile: join(tmp, 'strata.cjs'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external,
    define: { 'import.meta.url': '__strataBundleUrl' },
    banner: { js: 'var __strataBundleUrl = require("node:url").pathToFileURL(__filename).href;' },
    logLevel: 'warning',
  });
  // Worker threads' own entries, beside the bundle where copy-workers and stream-workers look for them.
  for (const worker of ['fileops/copy-worker', 'snapshot/stream-worker']) {
    await build({
      entryPoints: [join(root, `dist/src/${worker}.js`)],
      outfile: join(tmp, `${worker.split('/')[1]}.js`),
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      external,
      logLevel: 'warning',
    });
  }

  // Dynamic imports esbuild left in place (external packages, node builtins) would need a vm
  // import callback, which Node 20 only offers behind an experimental flag: builtins become
  // require calls, ES-only packages go through the launcher's import.
  const file = join(tmp, 'strata.cjs');
  let code = readFileSync(file, 'utf8');
  code = code.replace(/\bimport\(("(?:[^"\\]|\\.)*")\)/g, (_m, spec) => {
    const name = JSON.parse(spec);
    if (name.startsWith('node:')) return `Promise.resolve().then(() => require(${spec}))`;
    if (external.includes(name)) return `globalThis.__strataImport(${spec})`;
    throw new Error(`bundle: unexpected dynamic import of ${name}`);
  });
  const left = /\bimport\(/.exec(code);
  if (left) throw new Error(`bundle: a dynamic import is left at offset ${left.index}: ${code.slice(left.index, left.index + 80)}`);
  writeFileSync(file, code);

  // Swap the whole directory in at once: a strata starting meanwhile sees the old bundle or the new.
  const old = `${out}.old-${process.pid}`;
  try {
    renameSync(out, old);
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  renameSync(tmp, out);
  rmSync(old, { recursive: true, force: true });
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
