// A step's file list is written to the history once per selection: a rebuild that finds the list
// recorded neither writes it out again nor needs it at all (the solver hands unchanged selections'
// lists over as loaders), and the history reads lists back only when something asks.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/cache/store.js';
import { recordBuild, type BuildRecord } from '../../src/cache/history.js';
import { lazyFiles, loadBuildSteps, type StepInputs } from '../../src/cache/explain.js';

const root = mkdtempSync(join(tmpdir(), 'strata-histfiles-'));
after(() => rmSync(root, { recursive: true, force: true }));

const FILES = { 'src/a.js': 'file:644:sha256:aa', 'src/b.js': 'file:644:sha256:bb' };

/** Inputs whose file list counts how often it is read. */
function inputs(reads: { n: number }): StepInputs {
  const i: StepInputs = { op: 'sha256:op', args: {}, inputs: ['sha256:parent'], filesDigest: 'sha256:sel' };
  lazyFiles(i, () => {
    reads.n++;
    return { ...FILES };
  });
  return i;
}

function build(id: string, i: StepInputs): BuildRecord {
  return {
    id,
    started: 1,
    finished: 2,
    dockerfile: 'Dockerfile',
    context: '/ctx',
    target: 'app',
    args: {},
    status: 'done',
    steps: [{ vertex: { stage: 'app', stepLabel: '[app 1/1]', instruction: 'COPY src ./src' }, result: { key: 'k', cached: true, reason: '', durationMs: 1, inputs: i } }],
  };
}

test('a recorded file list is neither read nor written again, and loads back when asked', () => {
  const store = Store.open(join(root, 'store'));
  try {
    const first = { n: 0 };
    recordBuild(store, build('b1', inputs(first)));
    assert.equal(first.n, 1, 'the first build writes its list');
    const second = { n: 0 };
    recordBuild(store, build('b2', inputs(second)));
    assert.equal(second.n, 0, 'a rebuild with the list already recorded does not need it');
    assert.equal(store.db.prepare('SELECT COUNT(*) FROM file_lists').pluck().get(), 1);

    const text = store.db.prepare("SELECT inputs FROM build_steps WHERE build_id='b2'").pluck().get() as string;
    assert.deepEqual(JSON.parse(text), { op: 'sha256:op', args: {}, inputs: ['sha256:parent'], filesDigest: 'sha256:sel', filesRef: 'sha256:sel' });

    const steps = loadBuildSteps(store, 'b2').steps;
    assert.deepEqual(steps[0]!.inputs.files, FILES);
    assert.equal(JSON.parse(JSON.stringify(steps[0]!.inputs)).filesRef, undefined, 'the reference is resolved');
    assert.deepEqual(JSON.parse(JSON.stringify(steps[0]!.inputs)).files, FILES, 'a loaded list serializes as a plain one');
  } finally {
    store.close();
  }
});
