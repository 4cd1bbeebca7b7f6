// The build history is bounded: per Dockerfile, context and target, and in all. Dropped builds take
// their steps and the file lists nothing else points at with them; builds still running stay.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Store } from '../../src/cache/store.js';
import { historyLimits, pruneHistory, recordBuild, startBuild, type BuildRecord } from '../../src/cache/history.js';
import { findPreviousBuild, type StepInputs } from '../../src/cache/explain.js';
import { StrataError } from '../../src/errors.js';

const root = mkdtempSync(join(tmpdir(), 'strata-histkeep-'));
after(() => rmSync(root, { recursive: true, force: true }));

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

/** A build of one COPY whose selection (and so file list) is `sel`. */
function build(id: string, started: number, sel: number, project = '/ctx'): BuildRecord {
  const inputs: StepInputs = { op: 'sha256:op', args: {}, inputs: ['sha256:parent'], filesDigest: digest(sel), files: { [`f${sel}`]: 'file:644:sha256:aa' } };
  return {
    id,
    started,
    finished: started + 1,
    dockerfile: 'Dockerfile',
    context: project,
    target: 'app',
    args: {},
    status: 'done',
    steps: [{ vertex: { stage: 'app', stepLabel: '[app 1/1]', instruction: 'COPY . .' }, result: { key: `k${id}`, cached: false, reason: '', durationMs: 1, inputs } }],
  };
}

const ids = (store: Store) => store.db.prepare('SELECT id FROM builds ORDER BY started').pluck().all() as string[];
const lists = (store: Store) => store.db.prepare('SELECT digest FROM file_lists ORDER BY digest').pluck().all() as string[];

test('keeps the newest builds of each project and drops the file lists only they named', () => {
  const store = Store.open(join(root, 'a'));
  try {
    // b1..b5 of one project; b2 and b5 share a selection (a change undone)
    const sels = [1, 2, 3, 4, 2];
    sels.forEach((sel, i) => recordBuild(store, build(`b${i + 1}`, 100 + i, sel)));
    recordBuild(store, build('other', 50, 9, '/elsewhere'));
    assert.equal(lists(store).length, 5);
    assert.equal(pruneHistory(store, { perProject: 3, total: 100 }), 2);
    assert.deepEqual(ids(store), ['other', 'b3', 'b4', 'b5']);
    // b1's list went; b2's stays because b5 names it too
    assert.deepEqual(lists(store), [digest(2), digest(3), digest(4), digest(9)]);
    assert.equal(store.db.prepare("SELECT COUNT(*) FROM build_steps WHERE build_id IN ('b1','b2')").pluck().get(), 0);
    // explain still finds the previous build, with its files
    const prev = findPreviousBuild(store, { dockerfile: 'Dockerfile', context: '/ctx', target: 'app', before: 'b5' });
    assert.equal(prev?.id, 'b4');
    assert.deepEqual(prev?.steps[0]!.inputs.files, { f4: 'file:644:sha256:aa' });
    assert.equal(pruneHistory(store, { perProject: 3, total: 100 }), 0, 'nothing more to drop');

    // The list of a selection the stat cache records as the context's current state stays with
    // its build gone: another build may be about to read it.
    store.db.prepare('INSERT INTO stat_selections(key, fingerprint, digest) VALUES (?,?,?)').run('sel', 'fp', digest(3));
    for (const [i, sel] of [5, 6, 7].entries()) recordBuild(store, build(`c${i}`, 200 + i, sel));
    pruneHistory(store, { perProject: 3, total: 100 });
    assert.deepEqual(ids(store).filter((id) => id !== 'other'), ['c0', 'c1', 'c2']);
    assert.deepEqual(lists(store), [digest(3), digest(5), digest(6), digest(7), digest(9)]);
  } finally {
    store.close();
  }
});

test('the total cap drops the oldest builds of any project; a running build stays', () => {
  const store = Store.open(join(root, 'b'));
  try {
    for (let i = 0; i < 6; i++) recordBuild(store, build(`p${i}`, 200 + i, 10 + i, `/ci/job-${i}`));
    // an old build still running in this (live) process, and one whose process is gone
    startBuild(store, { id: 'live', started: 1, dockerfile: 'Dockerfile', context: '/ci/live', target: 'app', args: {} });
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    startBuild(store, { id: 'killed', started: 2, dockerfile: 'Dockerfile', context: '/ci/killed', target: 'app', args: {} });
    store.db.prepare("UPDATE builds SET pid=? WHERE id='killed'").run(Number(dead.stdout));
    // the three newest stay, and the running one on top of them
    assert.equal(pruneHistory(store, { perProject: 20, total: 3 }), 4);
    assert.deepEqual(ids(store), ['live', 'p3', 'p4', 'p5']);
    assert.deepEqual(lists(store), [digest(13), digest(14), digest(15)]);
  } finally {
    store.close();
  }
});

test('imported builds are kept apart from local ones', () => {
  const store = Store.open(join(root, 'c'));
  try {
    for (let i = 0; i < 3; i++) recordBuild(store, build(`l${i}`, 300 + i, 20 + i));
    for (let i = 0; i < 3; i++) recordBuild(store, { ...build(`imported-${i}`, 290 + i, 30 + i), status: 'imported' });
    pruneHistory(store, { perProject: 2, total: 100 });
    assert.deepEqual(ids(store), ['imported-1', 'imported-2', 'l1', 'l2']);
  } finally {
    store.close();
  }
});

test('the limits come from STRATA_HISTORY_KEEP and STRATA_HISTORY_MAX; a bad value is refused', () => {
  assert.deepEqual(historyLimits({}), { perProject: 20, total: 200 });
  assert.deepEqual(historyLimits({ STRATA_HISTORY_KEEP: '5', STRATA_HISTORY_MAX: '50' }), { perProject: 5, total: 50 });
  assert.throws(() => historyLimits({ STRATA_HISTORY_KEEP: '0' }), (e: unknown) => e instanceof StrataError && e.code === 'BAD_HISTORY_LIMIT' && /STRATA_HISTORY_KEEP=0/.test(e.message));
  assert.throws(() => historyLimits({ STRATA_HISTORY_MAX: 'lots' }), /STRATA_HISTORY_MAX=lots/);
});
