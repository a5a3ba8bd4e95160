/**
 * A record of the dedup changelog (`matrix.send.txns`): the remembered outcome of one transaction.
 * Written to the same partition number as the command it answers, keyed by the transaction identity so that
 * compaction keeps one record per transaction.
 */
export interface TxnRecord {
  /** Outcome: an event ID, or a definitive rejection that retries must see again. */
  event_id?: string;
  error?: { status: number; errcode: string; error: string };
  /** An annotation handed to the annotation stage (keyed by this annotation identity), which owns the outcome. */
  forwarded?: string;
  /** When the transaction was first accepted (ms): entries older than the window are forgotten. */
  ts: number;
}

/**
 * What the changelog record says about the transaction itself, for people and tools (`npm run events -- txn`);
 * the consumer does not keep it in memory.
 */
export interface TxnDescription {
  scope_hash: string;
  room_id: string;
  type: string;
  txn_id: string;
}

export type TxnChangelogRecord = TxnRecord & TxnDescription;

/** The outcome part of a changelog record, as the consumer keeps it (and nothing more, to keep memory small). */
export function decodeTxnRecord(value: Buffer | null): TxnRecord | null {
  if (value === null) return null; // a tombstone
  try {
    const { event_id, error, forwarded, ts } = JSON.parse(value.toString('utf8')) as TxnRecord;
    if (typeof ts !== 'number') return null;
    if (typeof event_id === 'string') return { event_id, ts };
    if (typeof forwarded === 'string') return { forwarded, ts };
    if (error !== undefined) return { error, ts };
  } catch {
    // fall through
  }
  return null;
}
