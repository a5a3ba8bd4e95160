/** The worker thread of `mergeFullRestore`: merges one full restore, then says how it went. */
import { parentPort, workerData } from 'node:worker_threads';
import { MergeJob, mergeStaged } from './full-restore';

try {
  mergeStaged(workerData as MergeJob);
  parentPort!.postMessage({});
} catch (error) {
  const { message, code, errcode, errstr } = error as Error & { code?: string; errcode?: number; errstr?: string };
  parentPort!.postMessage({ error: message, code, errcode, errstr });
}
