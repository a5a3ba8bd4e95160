import { Message } from 'kafkajs';

/**
 * A batch's changes to a state store: they shadow the committed state for the rest of the batch (and, in a stage that
 * decides on top of uncommitted batches, for the batches after it), become changelog records in the batch's
 * transaction, and reach the store only once it has committed.
 */
export class WriteBuffer<V> {
  private readonly changes = new Map<string, { value: V | null; description?: object }>();

  constructor(private readonly committed: (key: string) => V | undefined) {}

  get(key: string): V | undefined {
    const change = this.changes.get(key);
    return change ? (change.value ?? undefined) : this.committed(key);
  }

  /** This buffer's own change of `key` (a null value: a deletion), without looking further; undefined if none. */
  change(key: string): { value: V | null } | undefined {
    return this.changes.get(key);
  }

  /**
   * Stages a new value, or a deletion (a tombstone in the changelog). A description adds fields to the changelog
   * record for people and tools reading the log; the store never keeps them.
   */
  set(key: string, value: V | null, description?: object): void {
    this.changes.set(key, { value, description });
  }

  /** The first key staged in this batch, with a value (not a deletion), that `test` accepts. */
  findStaged(test: (key: string, value: V) => boolean): string | undefined {
    for (const [key, { value }] of this.changes) if (value !== null && test(key, value)) return key;
    return undefined;
  }

  /** The changes as changelog records for `partition`. */
  toChangelog(partition: number): Message[] {
    return [...this.changes].map(([key, { value, description }]) => ({
      key,
      value: value === null ? null : JSON.stringify(description ? { ...value, ...description } : value),
      partition,
    }));
  }

  /** The staged changes, for the store once the batch's transaction has committed. */
  *entries(): Iterable<[string, V | null]> {
    for (const [key, { value }] of this.changes) yield [key, value];
  }
}
