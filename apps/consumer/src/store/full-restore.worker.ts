/** The worker thread of `mergeFullRestore`: merges one full restore, then says how it went. */
import { parentPort, workerData } from 'node:worker_threads';
import { MergeJob, mergeStaged } from './full-restore';

try {
  mergeStaged(workerData as MergeJob);
  parentPort!.postMessage({});
} catch (error) {
  const { message, code, errstr } = error as Error & { code?: string; errstr?: string };
  parentPort!.postMessage({ error: errstr && !message.includes(errstr) ? `${message} (${errstr})` : message, code });
}
