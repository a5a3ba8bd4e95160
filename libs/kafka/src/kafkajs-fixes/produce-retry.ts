/**
 * Two defects of kafkajs 2.2.4's sendMessages, found by the three-broker failover test (the Java client saw both),
 * that a single broker never shows. It sends one request to each broker leading a partition of the send and retries
 * the whole send on a retriable error:
 * - it retried as soon as one request failed, while the requests to other brokers were still in flight; those were
 *   then sent again with new sequence numbers, and both copies committed (duplicates);
 * - on the retry it skipped every broker that had answered before, by broker: a partition whose leader had moved to
 *   such a broker (a broker killed, a rolling restart) was never sent, and the send still succeeded. Its transaction
 *   committed without it: events answered 200 that are in no replica, beside their committed changelog records.
 * This rewrites sendMessages so that a retry waits for every request of the attempt, and remembers which partitions
 * were written rather than which brokers answered. It must run before kafkajs is loaded, like the read_committed fix.
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
