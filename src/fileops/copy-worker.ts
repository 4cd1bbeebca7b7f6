// A copy worker thread: runs the file jobs it is sent (see copy-workers.ts) and answers with the
// first failure, as plain data (an Error does not cross threads with its code and path).
import { parentPort } from 'node:worker_threads';
import { runJobs, type FileOpJob } from './file-jobs.js';

export interface JobRequest {
  id: number;
  jobs: FileOpJob[];
}

export interface JobReply {
  id: number;
  error?: { message: string; code?: string; syscall?: string; path?: string; errno?: number; stack?: string };
}

parentPort?.on('message', (req: JobRequest) => {
  let reply: JobReply;
  try {
    runJobs(req.jobs);
    reply = { id: req.id };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    reply = { id: req.id, error: { message: String(err?.message ?? e), code: err?.code, syscall: err?.syscall, path: err?.path, errno: err?.errno, stack: err?.stack } };
  }
  parentPort!.postMessage(reply);
});
