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
  sweep(): number {
    let forgotten = 0;
    for (const [identity, entry] of this.entries) {
      if (!this.isExpired(entry)) break;
      this.entries.delete(identity);
      forgotten++;
    }
    return forgotten;
  }

  get size(): number {
    return this.entries.size;
  }

  private isExpired(entry: TxnRecord): boolean {
    return entry.ts <= this.now() - this.windowMs;
  }
}

/**
 * A batch's view of the state: outcomes decided in this batch shadow the committed ones, and only reach the
 * committed state once the batch's Kafka transaction has committed.
 */
export class StagedState {
  private readonly staged = new Map<string, TxnRecord>();

  constructor(private readonly committed: DedupState) {}

  get(identity: string): TxnRecord | undefined {
    return this.staged.get(identity) ?? this.committed.get(identity);
  }

  set(identity: string, record: TxnRecord): void {
    this.staged.set(identity, record);
  }

  commit(): void {
    for (const [identity, record] of this.staged) this.committed.apply(identity, record);
  }
}
