import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

/** How often one store's write-ahead log is copied into its database, at most. */
const CHECKPOINT_INTERVAL_MS = 1000;
/** Longest a store waits, closing, for a checkpoint of it under way in the worker. */
const CLOSE_WAIT_MS = 30_000;

/** Slots of a store's shared flags. */
const BUSY = 0;
const STOPPED = 1;

/** What the worker is told: checkpoint the store at `path`, unless its `flags` say it is closing. */
export interface CheckpointRequest {
  path: string;
  flags: Int32Array;
}

export { BUSY as CHECKPOINT_BUSY, STOPPED as CHECKPOINT_STOPPED };

let worker: Worker | undefined;

function checkpointWorker(): Worker {
  if (!worker) {
    worker = new Worker(join(__dirname, 'wal-checkpointer.worker.js'));
    worker.unref(); // it never keeps the process alive
    worker.on('error', () => (worker = undefined)); // the next request starts another
  }
  return worker;
}

/**
 * Copies one store's write-ahead log into its database from a worker thread, through a connection of its own, at most
 * once a second. SQLite's automatic checkpoint does it inside a commit, with an fsync of the database: on the 2-core
 * machine under load, commits of 100 entries then took 120 ms at the 99th percentile (22 ms without), all of it on the
 * event loop. SQLite lets one connection checkpoint while another writes, and the store's own connection keeps an
 * automatic checkpoint at a high mark, so its log stays bounded even if the worker falls behind.
 *
 * The worker's connection is opened and closed for each checkpoint, and the store waits for it before closing its own:
 * the last connection to close deletes the log by name, which must never be a newer store's at the same path.
 */
export class WalCheckpointer {
  private readonly flags = new Int32Array(new SharedArrayBuffer(8));
  private requested = 0;

  constructor(private readonly path: string) {}

  /** After a commit: asks for a checkpoint if none was asked for within the interval and none is under way. */
  committed(): void {
    const now = Date.now();
    if (now - this.requested < CHECKPOINT_INTERVAL_MS || Atomics.load(this.flags, BUSY) === 1) return;
    this.requested = now;
    Atomics.store(this.flags, BUSY, 1);
    checkpointWorker().postMessage({ path: this.path, flags: this.flags } satisfies CheckpointRequest);
  }

  /** Before the store's connection closes: no checkpoint starts any more, and the one under way has ended. */
  stop(): void {
    Atomics.store(this.flags, STOPPED, 1);
    Atomics.wait(this.flags, BUSY, 1, CLOSE_WAIT_MS);
  }
}
