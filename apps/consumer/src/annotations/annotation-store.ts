import { Checkpoint } from '@app/kafka';
import { ANNOTATION_STATE_KEYS, AnnotationHolder, AnnotationStateValue, TxnRecord } from '@app/contracts';
import { DiskStore, StoredRow } from '../store/disk-store';
import { KeyedStore } from '../store/keyed-store';

/** Tombstones one batch writes at most for transactions past the window; the next batches write the rest. */
const TOMBSTONES_PER_BATCH = 1000;

/**
 * The annotation stage's state store for one partition, in a DiskStore: which annotation identities are held (by
 * which event, found through the row's `ref`), and the outcome of each annotation transaction, so that a retry gets
 * its first answer. Keys are those of its changelog (`ANNOTATION_STATE_KEYS`).
 *
 * The changelog is compacted, never expired by time (holders must stay), so a transaction past the window keeps its
 * row, invisible to `get`, until the tombstone a batch writes for it has committed.
 */
export class AnnotationStore implements KeyedStore<AnnotationStateValue> {
  /** Annotation identities held (holder rows), for the held-annotations bound. */
  private holders: number;

  constructor(
    private readonly disk: DiskStore,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.holders = this.countHolders();
  }

  get(key: string): AnnotationStateValue | undefined {
    const value = this.disk.get(key, this.now());
    return value === undefined ? undefined : (JSON.parse(value) as AnnotationStateValue);
  }

  /** The annotation identity that `eventId` holds, if it holds one. */
  heldBy(eventId: string): string | undefined {
    const key = this.disk.findByRef(eventId);
    const parsed = key === undefined ? null : ANNOTATION_STATE_KEYS.parse(key);
    return parsed?.kind === 'holder' ? parsed.annotationId : undefined;
  }

  /** Held annotations of `sender` in this partition (holders written before senders were recorded count for none). */
  heldOf(sender: string): number {
    return this.disk.countByGroup(sender);
  }

  /** Annotation identities held in this partition. */
  get held(): number {
    return this.holders;
  }

  apply(key: string, value: AnnotationStateValue | null): void {
    this.countHolderChange(key, value);
    this.disk.restoreRow(key, this.rowOf(key, value));
  }

  commit(changes: Iterable<[string, AnnotationStateValue | null]>, checkpoint?: Checkpoint): void {
    const rows = function* (store: AnnotationStore): Iterable<[string, StoredRow | null]> {
      for (const [key, value] of changes) {
        store.countHolderChange(key, value);
        yield [key, store.rowOf(key, value)];
      }
    };
    try {
      this.disk.write(rows(this), checkpoint);
    } catch (error) {
      this.holders = this.countHolders(); // rolled back
      throw error;
    }
  }

  get size(): number {
    return this.disk.size;
  }

  get bytes(): number {
    return this.disk.bytes;
  }

  /** Forgets nothing itself: a transaction past the window stays until the tombstone a batch writes for it commits. */
  sweep(): number {
    return 0;
  }

  /** Changelog keys to tombstone: transactions past the window, oldest first, a batch's worth. */
  expiredKeys(): string[] {
    return this.disk.expiredKeys(this.now(), TOMBSTONES_PER_BATCH);
  }

  checkpoint(): Checkpoint | undefined {
    return this.disk.checkpoint();
  }

  clear(): void {
    this.disk.clear();
    this.holders = 0;
  }

  /** Counts the holders again once restored: during a full restore the new file answers no lookups. */
  async restored(checkpoint: Checkpoint): Promise<void> {
    await this.disk.restored(checkpoint);
    this.holders = this.countHolders();
  }

  close(): void {
    this.disk.close();
  }

  private rowOf(key: string, value: AnnotationStateValue | null): StoredRow | null {
    const parsed = ANNOTATION_STATE_KEYS.parse(key);
    if (parsed === null || value === null) return null;
    if (parsed.kind === 'txn')
      return { value: JSON.stringify(value), expires: (value as TxnRecord).ts + this.windowMs };
    const holder = value as AnnotationHolder;
    return { value: JSON.stringify(value), expires: null, ref: holder.event_id, group: holder.sender ?? null };
  }

  /** Before a holder row is written or deleted: keeps the count of holders exact. */
  private countHolderChange(key: string, value: AnnotationStateValue | null): void {
    if (ANNOTATION_STATE_KEYS.parse(key)?.kind !== 'holder') return;
    const before = this.disk.has(key);
    this.holders += (value === null ? 0 : 1) - (before ? 1 : 0);
  }

  private countHolders(): number {
    const prefix = ANNOTATION_STATE_KEYS.holder('');
    // Every holder key is the prefix and then more: the keys from the prefix up to the prefix with its last character
    // raised by one.
    const after = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    return this.disk.countKeys(prefix, after);
  }
}
