import { Checkpoint, LocalState } from '@app/kafka';

/**
 * A stage's state for one partition, rebuilt from its changelog: every change is a (key, value) record of the
 * changelog, a null value a tombstone. Restore and committed batches apply records the same way. The store lives on
 * local disk with a checkpoint (the changelog offset up to which it holds everything), so a take-over replays only
 * the changelog after it.
 */
export interface KeyedStore<V> extends LocalState {
  get(key: string): V | undefined;
  /** Applies one changelog record while restoring (committed to disk in chunks, the checkpoint at the end). */
  apply(key: string, value: V | null): void;
  /** Applies a committed batch's changes, and the checkpoint they bring the store to, all or nothing. */
  commit(changes: Iterable<[string, V | null]>, checkpoint?: Checkpoint): void;
  /** Entries held, for the gauges and the entry budget. */
  readonly size: number;
  /** Bytes the store takes on disk, for the disk budget. */
  readonly bytes: number;
  /**
   * Forgets at most `limit` entries older than the window, in one SQLite transaction; returns how many it forgot
   * (the caller yields to the event loop and calls again while it gets `limit`).
   */
  sweep(limit: number): number;
  /** Closes the files; the partition's state stays on disk (see StateDirectory for when it goes). */
  close(): void;
}
