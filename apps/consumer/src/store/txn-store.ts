import { Message } from 'kafkajs';
import { TxnRecord } from '@app/contracts';

/**
 * The remembered outcomes of one partition's transactions, for the window. Entries sit in a Map in the order
 * they were accepted, which is time order, so forgetting old ones is a walk from the front.
 */
export class DedupState {
  private readonly entries = new Map<string, TxnRecord>();

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(identity: string): TxnRecord | undefined {
    const entry = this.entries.get(identity);
    if (entry && this.isExpired(entry)) {
      this.entries.delete(identity);
      return undefined;
    }
    return entry;
  }

  /** Applies a changelog record during restore, or a committed outcome; a null record forgets the identity. */
  apply(identity: string, record: TxnRecord | null): void {
    if (record === null || this.isExpired(record)) this.entries.delete(identity);
    else this.entries.set(identity, record);
  }

  /** Forgets everything older than the window; cheap, since the oldest entries come first. */
  sweep(forget: (identity: string) => void = () => undefined): number {
    let forgotten = 0;
    for (const [identity, entry] of this.entries) {
      if (!this.isExpired(entry)) break;
      this.entries.delete(identity);
      forget(identity);
      forgotten++;
    }
    return forgotten;
  }

  get size(): number {
    return this.entries.size;
  }

  isExpired(entry: TxnRecord): boolean {
    return entry.ts <= this.now() - this.windowMs;
  }
}

/**
 * A batch's changes to a keyed state: they shadow the committed state for the rest of the batch, become
 * changelog records in the batch's transaction, and reach the committed state only once it has committed.
 */
export class StagedChanges<V> {
  private readonly changes = new Map<string, V | null>();

  constructor(private readonly committed: (key: string) => V | undefined) {}

  get(key: string): V | undefined {
    return this.changes.has(key) ? (this.changes.get(key) ?? undefined) : this.committed(key);
  }

  /** Stages a new value, or a deletion (a tombstone in the changelog). */
  set(key: string, value: V | null): void {
    this.changes.set(key, value);
  }

  /** The changes as changelog records for `partition`; `describe` may add fields for readers of the log. */
  toChangelog(partition: number, describe: (key: string, value: V) => unknown = (_key, value) => value): Message[] {
    return [...this.changes].map(([key, value]) => ({ key, value: value === null ? null : JSON.stringify(describe(key, value)), partition }));
  }

  commit(apply: (key: string, value: V | null) => void): void {
    for (const [key, value] of this.changes) apply(key, value);
  }
}
