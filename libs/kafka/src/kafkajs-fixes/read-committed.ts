/**
 * kafkajs 2.2.4 filters records of aborted transactions (read_committed) assuming the broker lists aborted
 * transactions by first offset, and marks at most one per record. Brokers list them in transaction-index order
 * (by the abort marker's offset), so with several transactional producers writing one partition, records of an
 * aborted transaction can slip through to a read_committed reader: found by the crash test, where the Java
 * client did not see records that kafkajs returned. This replaces kafkajs' filter with one that orders the
 * aborted transactions by first offset, as the Java client does. It must run before kafkajs is loaded.
 */
const FILTER = require.resolve('kafkajs/src/consumer/filterAbortedMessages');
/** The kafkajs release whose internal module this replaces; package.json pins it exactly. */
export const PATCHED_KAFKAJS_VERSION = '2.2.4';
const BATCH = require.resolve('kafkajs/src/consumer/batch');

interface FilterableMessage {
  offset: string;
  key: Buffer | null;
  batchContext: { producerId: string; inTransaction: boolean };
  isControlRecord?: boolean;
}
interface AbortedTransaction {
  producerId: string;
  firstOffset: string;
}

const ABORT_MARKER_KEY = Buffer.from([0, 0, 0, 0]);

export function filterAbortedMessages({
  messages,
  abortedTransactions,
}: {
  messages: FilterableMessage[];
  abortedTransactions?: AbortedTransaction[];
}): FilterableMessage[] {
  if (!abortedTransactions || abortedTransactions.length === 0) return messages;
  const pending = [...abortedTransactions].sort((a, b) =>
    BigInt(a.firstOffset) < BigInt(b.firstOffset) ? -1 : BigInt(a.firstOffset) > BigInt(b.firstOffset) ? 1 : 0,
  );
  const aborting = new Set<string>();
  return messages.filter((message) => {
    const offset = BigInt(message.offset);
    while (pending.length > 0 && offset >= BigInt(pending[0].firstOffset)) aborting.add(pending.shift()!.producerId);
    const { producerId, inTransaction } = message.batchContext;
    if (message.isControlRecord && message.key && Buffer.from(message.key).equals(ABORT_MARKER_KEY)) {
      aborting.delete(producerId);
      return true; // control records are dropped by kafkajs' Batch afterwards
    }
    return !(inTransaction && aborting.has(producerId));
  });
}

/** Throws unless the installed kafkajs is the release this fix was written against. */
export function assertPatchedKafkajsVersion(installed: string): void {
  if (installed !== PATCHED_KAFKAJS_VERSION) {
    throw new Error(
      `kafkajs-fixes/read-committed replaces an internal module of kafkajs ${PATCHED_KAFKAJS_VERSION}, but kafkajs ${installed} is ` +
        'installed: check that its filterAbortedMessages still has the same contract, then update the pin and this check',
    );
  }
}

// eslint-disable-next-line @typescript-eslint/no-require-imports -- the installed version, read before kafkajs loads
assertPatchedKafkajsVersion((require('kafkajs/package.json') as { version: string }).version);
if (require.cache[BATCH]) {
  throw new Error('kafkajs-fixes/read-committed must be loaded before kafkajs (import @app/kafka first)');
}
// eslint-disable-next-line @typescript-eslint/no-require-imports -- loads kafkajs' module so its export can be swapped
require(FILTER); // load kafkajs' module, then swap its export before Batch requires it
require.cache[FILTER]!.exports = filterAbortedMessages;
