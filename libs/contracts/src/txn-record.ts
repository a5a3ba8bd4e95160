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

export function decodeTxnRecord(value: Buffer | null): TxnRecord | null {
  if (value === null) return null; // a tombstone
  try {
    const parsed = JSON.parse(value.toString('utf8')) as TxnRecord;
    const hasOutcome = typeof parsed.event_id === 'string' || typeof parsed.forwarded === 'string' || parsed.error !== undefined;
    if (typeof parsed.ts === 'number' && hasOutcome) return parsed;
  } catch {
    // fall through
  }
  return null;
}
