// Where a COPY's file jobs run. A few run inline; many go to worker threads: creating thousands of
// files is kernel-bound, and on the main thread it would hold the event loop for seconds while a
// parallel step (a RUN in another stage) waits for its output, its exit and its commit. Two
// workers use both cores of a small machine. Workers start on first use and stay for later steps
// (they do not keep the process alive while idle).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Pacer } from '../context/walk.js';
import { runJob, type FileOpJob } from './file-jobs.js';
import type { JobReply, JobRequest } from './copy-worker.js';

/** Below both, inline is cheaper than handing the jobs over. */
const WORKER_MIN_JOBS = 200;
const WORKER_MIN_BYTES = 8 * 1024 * 1024;
/** From this many jobs on, they are split between workers. */
const SPLIT_MIN_JOBS = 1000;
const MAX_WORKERS = 2;

type Pending = { resolve: () => void; reject: (e: Error) => void };

function revive(err: NonNullable<JobReply['error']>): Error {
  const e = Object.assign(new Error(err.message), { code: err.code, syscall: err.syscall, path: err.path, errno: err.errno });
  if (err.stack) e.stack = err.stack;
  return e;
}

class CopyWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  dead = false;

  constructor() {
    this.worker = new Worker(new URL('./copy-worker.js', import.meta.url));
    this.worker.on('message', (r: JobReply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (this.pending.size === 0) this.worker.unref();
      if (r.error) p.reject(revive(r.error));
      else p.resolve();
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`copy worker stopped (exit code ${code})`)));
    // After the listeners: adding a 'message' listener refs the worker's port again, and a worker
    // started for a copy that then ran inline would keep the process alive.
    this.worker.unref();
  }

  private fail(e: Error): void {
    this.dead = true;
    workers.splice(0, workers.length, ...workers.filter((w) => w !== this));
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  run(jobs: FileOpJob[]): Promise<void> {
    if (this.dead) return Promise.reject(new Error('copy worker stopped'));
    const id = ++this.nextId;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ id, jobs } satisfies JobRequest);
    });
  }
}

const workers: CopyWorker[] = [];
let unavailable = false;

function workersFor(n: number): CopyWorker[] {
  while (!unavailable && workers.length < n) {
    try {
      workers.push(new CopyWorker());
    } catch {
      // No worker threads here (a restricted runtime): everything runs inline.
      unavailable = true;
    }
  }
  return workers.slice(0, n);
}

function workersWanted(jobs: number): number {
  return jobs >= SPLIT_MIN_JOBS ? Math.max(1, Math.min(MAX_WORKERS, availableParallelism())) : 1;
}

/** Starts the workers a copy of about `entries` entries will use, so they boot while it plans. */
export function prepareCopyWorkers(entries: number): void {
  if (entries >= WORKER_MIN_JOBS) workersFor(workersWanted(entries));
}

async function runInline(jobs: FileOpJob[]): Promise<void> {
  const pause = new Pacer();
  for (const j of jobs) {
    if (pause.due()) await pause.maybe();
    runJob(j);
  }
}

/** Runs the jobs (no two may share a target); rejects with the first failure once all have stopped. */
export async function runFileJobs(jobs: FileOpJob[]): Promise<void> {
  if (jobs.length === 0) return;
  let bytes = 0;
  for (const j of jobs) if (j.kind === 'file') bytes += j.size;
  if (jobs.length < WORKER_MIN_JOBS && bytes < WORKER_MIN_BYTES) return runInline(jobs);
  const pool = workersFor(workersWanted(jobs.length));
  if (pool.length === 0) return runInline(jobs);
  // Contiguous slices keep each worker in its own directories (creating in one dir serializes).
  const per = Math.ceil(jobs.length / pool.length);
  const results = await Promise.allSettled(pool.map((w, i) => w.run(jobs.slice(i * per, (i + 1) * per))));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
