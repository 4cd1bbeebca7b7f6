// Copy workers start ahead of a big copy (prepareCopyWorkers); when the copy then runs inline (e.g.
// its files were linked instead, see link-reuse.ts), idle workers must not keep the process alive.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { pathToFileURL } from 'node:url';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

const workers = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../src/fileops/copy-workers.js')).href;

test('a process with prepared but unused copy workers exits by itself', () => {
  const script = `const m = await import(${JSON.stringify(workers)}); m.prepareCopyWorkers(5000); await new Promise((r) => setTimeout(r, 200)); await m.runFileJobs([]); console.log('done');`;
  // a module file: \`node -e\` exits after its script whatever is still referenced
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-workers-'));
  const file = path.join(dir, 'prepare.mjs');
  writeFileSync(file, script);
  let r;
  try {
    r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 10_000 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(r.signal, null, 'the process had to be killed: something kept it alive');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'done');
});
