import { Checkpoint } from '@app/kafka';
import { TxnRecord } from '@app/contracts';
import { DiskStore, StoredRow } from './disk-store';
import { KeyedStore } from './keyed-store';

/**
 * The send stage's state store for one partition: the remembered outcome of each transaction, for the window, in a
 * DiskStore. Its changelog is `matrix.send.txns`, keyed by transaction identity.
 */
export class TxnStore implements KeyedStore<TxnRecord> {
  constructor(
    private readonly disk: DiskStore,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(identity: string): TxnRecord | undefined {
    const value = this.disk.get(identity, this.now());
    return value === undefined ? undefined : (JSON.parse(value) as TxnRecord);
  }

  apply(identity: string, record: TxnRecord | null): void {
    this.disk.restoreRow(identity, this.rowOf(record));
  }

  commit(changes: Iterable<[string, TxnRecord | null]>, checkpoint?: Checkpoint): void {
    this.disk.write(this.rowsOf(changes), checkpoint);
  }

  /** Forgets at most `limit` transactions older than the window (the changelog's retention drops them there). */
  sweep(limit: number): number {
    return this.disk.deleteExpired(this.now(), limit);
  }

  get size(): number {
    return this.disk.size;
  }

  get bytes(): number {
    return this.disk.bytes;
  }

  checkpoint(): Checkpoint | undefined {
    return this.disk.checkpoint();
  }

  clear(): void {
    this.disk.clear();
  }

  restored(checkpoint: Checkpoint): Promise<void> {
    return this.disk.restored(checkpoint);
  }

  close(): void {
    this.disk.close();
  }

  isExpired(entry: TxnRecord): boolean {
    return entry.ts <= this.now() - this.windowMs;
  }

  /** A record past the window is not kept (a restore may meet one the retention has not dropped yet). */
  rowOf(record: TxnRecord | null): StoredRow | null {
    if (record === null || this.isExpired(record)) return null;
    return { value: JSON.stringify(record), expires: record.ts + this.windowMs };
  }

  private *rowsOf(changes: Iterable<[string, TxnRecord | null]>): Iterable<[string, StoredRow | null]> {
    for (const [identity, record] of changes) yield [identity, this.rowOf(record)];
  }
}
