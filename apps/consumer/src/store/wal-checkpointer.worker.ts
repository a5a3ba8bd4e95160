/** The worker thread of `WalCheckpointer`: checkpoints the stores it is asked to, one at a time. */
import { DatabaseSync } from 'node:sqlite';
import { parentPort } from 'node:worker_threads';
import { CHECKPOINT_BUSY, CHECKPOINT_STOPPED, CheckpointRequest } from './wal-checkpointer';

parentPort!.on('message', ({ path, flags }: CheckpointRequest) => {
  try {
    if (Atomics.load(flags, CHECKPOINT_STOPPED) === 1) return;
    const db = new DatabaseSync(path);
    try {
      // PASSIVE: copies what it can without waiting for the store's writer; the writer goes on meanwhile.
      db.exec('PRAGMA wal_checkpoint(PASSIVE)');
    } finally {
      db.close(); // never the last connection: the store waits for this before closing its own
    }
  } catch {
    // A full disk fails the store's own writes too, which say so; the next commit asks again.
  } finally {
    Atomics.store(flags, CHECKPOINT_BUSY, 0);
    Atomics.notify(flags, CHECKPOINT_BUSY);
  }
});
