/**
 * Three defects of kafkajs 2.2.4's sendMessages that a single broker never shows. It sends one request to each
 * broker leading a partition of the send and retries the whole send on a retriable error. Found by the three-broker
 * failover test (the Java client saw both):
 * - it retried as soon as one request failed, while the requests to other brokers were still in flight; those were
 *   then sent again with new sequence numbers, and both copies committed (duplicates);
 * - on the retry it skipped every broker that had answered before, by broker: a partition whose leader had moved to
 *   such a broker (a broker killed, a rolling restart) was never sent, and the send still succeeded. Its transaction
 *   committed without it: events answered 200 that are in no replica, beside their committed changelog records.
 * Found by the three-broker benchmark:
 * - in a transaction, each broker's request first added its own partitions to the transaction, so a send to three
 *   leaders made three AddPartitionsToTxn requests at once for one transactional id; the coordinator takes one at a
 *   time and refuses the others with CONCURRENT_TRANSACTIONS, which the producer retried after 20 ms, then 40 ms.
 *   Three requests and two back-offs of the transaction's critical path (about 40 of its 60 ms on the local cluster)
 *   where the Java client sends one request for every partition of the send (its TransactionManager adds the
 *   pending partitions together before the Sender drains their batches).
 * This rewrites sendMessages so that a retry waits for every request of the attempt, remembers which partitions
 * were written rather than which brokers answered, and adds every partition of an attempt to the transaction in one
 * request before any produce request. It must run before kafkajs is loaded, like the read_committed fix.
 */
import { applyEdits, replaceKafkajsModule } from './source-patch';

const SEND_MESSAGES = require.resolve('kafkajs/src/producer/sendMessages');
/** The exact pieces of kafkajs 2.2.4's source that change, and what they become. */
const EDITS: [string, string][] = [
  [
    'const responsePerBroker = new Map()',
    'const responsePerBroker = new Map()\n    const writtenPartitions = new Set()\n    const responses = []\n' +
      '    const unwritten = (topic, partitions) => (partitions || []).filter(p => !writtenPartitions.has(`${topic}:${Number(p)}`))',
  ],
  [
    'const brokersWithoutResponse = brokers.filter(broker => !responsePerBroker.get(broker))',
    'const brokersWithoutResponse = brokers.filter(broker =>\n' +
      '        Array.from(topicMetadata.entries()).some(([topic, { partitionsPerLeader }]) => unwritten(topic, partitionsPerLeader[broker.nodeId]).length > 0))',
  ],
  [
    '      return brokersWithoutResponse.map(async broker => {',
    '      if (eosManager.isTransactional()) {\n' +
      '        await eosManager.addPartitionsToTransaction(\n' +
      '          Array.from(topicMetadata.entries()).map(([topic, { partitionsPerLeader }]) => ({\n' +
      '            topic,\n' +
      '            partitions: Object.values(partitionsPerLeader).flat().map(partition => ({ partition })),\n' +
      '          }))\n' +
      '        )\n' +
      '      }\n' +
      '      return brokersWithoutResponse.map(async broker => {',
  ],
  [
    `          .filter(([_, { partitionsPerLeader }]) => !!partitionsPerLeader[broker.nodeId])
          .map(([topic, { partitionsPerLeader, messagesPerPartition, sequencePerPartition }]) => ({
            topic,
            partitions: partitionsPerLeader[broker.nodeId],
            messagesPerPartition,
          }))`,
    `          .map(([topic, { partitionsPerLeader, messagesPerPartition }]) => ({
            topic,
            partitions: unwritten(topic, partitionsPerLeader[broker.nodeId]),
            messagesPerPartition,
          }))
          .filter(({ partitions }) => partitions.length > 0)`,
  ],
  [
    'responsePerBroker.set(broker, formattedResponse)',
    'responsePerBroker.set(broker, formattedResponse)\n          responses.push(...formattedResponse)\n' +
      '          topicData.forEach(({ topic, partitions }) => partitions.forEach(({ partition }) => writtenPartitions.add(`${topic}:${Number(partition)}`)))',
  ],
  ['await Promise.all(requests)', 'await settleAll(requests)'],
  ['return Array.from(responsePerBroker.values()).flat()', 'return responses'],
];

/** kafkajs' source with both fixes; throws if the source is not the one they were written for. */
export function patchSendMessages(source: string): string {
  const settle =
    'const settleAll = async promises => {\n' +
    "  const failed = (await Promise.allSettled(promises)).find(result => result.status === 'rejected')\n" +
    '  if (failed) throw failed.reason\n' +
    '}\n';
  return settle + applyEdits('produce-retry', source, EDITS);
}

replaceKafkajsModule('produce-retry', SEND_MESSAGES, patchSendMessages);
