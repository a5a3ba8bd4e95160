/**
 * A stage's state for one partition, rebuilt from its changelog: every change is a (key, value) record of the
 * changelog, a null value a tombstone. Restore and committed batches apply records the same way.
 */
export interface KeyedStore<V> {
  get(key: string): V | undefined;
  apply(key: string, value: V | null): void;
  /** Entries held, for the memory budget. */
  readonly size: number;
  /** Forgets entries older than the window; returns how many. */
  sweep(): number;
}
