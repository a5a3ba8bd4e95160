import { TxnRecord } from '@app/contracts';
import { KeyedStore } from './keyed-store';

/**
 * The send stage's state store for one partition: the remembered outcome of each transaction, for the window.
 * Entries sit in a Map in the order they were accepted, which is time order, so forgetting old ones is a walk from
 * the front. Its changelog is `matrix.send.txns`, keyed by transaction identity.
 */
export class TxnStore implements KeyedStore<TxnRecord> {
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
