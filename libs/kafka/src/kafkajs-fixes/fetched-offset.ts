import type { Batch } from 'kafkajs';

/**
 * The offset a batch's fetch asked for (kafkajs 2.2.4 keeps it on the batch, untyped): the first record at or after
 * it is the batch's first, so a batch fetched from a given offset is told apart from one fetched earlier even where
 * the log has a gap (a control record, a compacted record).
 */
export function fetchedOffsetOf(batch: Batch): bigint {
  const { fetchedOffset } = batch as Batch & { fetchedOffset?: string };
  if (fetchedOffset === undefined) throw new Error('kafkajs-fixes: this kafkajs keeps no fetchedOffset on a batch');
  return BigInt(fetchedOffset);
}
