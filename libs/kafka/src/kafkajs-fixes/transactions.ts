/**
 * Two defects of kafkajs 2.2.4's transaction manager (eosManager), fixed in its source:
 * - it looked a coordinator up (a FindCoordinator request) before every request of a transaction:
 *   AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn, four round trips per transaction that always
 *   answer the same broker (the benchmark's cost breakdown counted 0.23 of them per send, about a quarter of all
 *   Kafka requests). Like the Java client, a producer now remembers each coordinator, per (type, id), until a
 *   request to it fails (a moved coordinator answers NOT_COORDINATOR, a dead one does not answer); the retry then
 *   looks it up again. CONCURRENT_TRANSACTIONS, which the coordinator answers while it finishes the previous
 *   commit, keeps it.
 * - AddOffsetsToTxn was not retried on CONCURRENT_TRANSACTIONS (AddPartitionsToTxn is). A transaction that writes
 *   no record (a batch of client retries only) opens with it, right after the previous commit: it failed, and the
 *   processor aborted the batch and took its partition over again for nothing. It is now retried as the Java
 *   client does, from 20 ms on.
 * - TxnOffsetCommit carries the consumer group metadata that `sendOffsets` is given (see group-fencing.ts).
 */
import { applyEdits, replaceKafkajsModule } from './source-patch';

const EOS_MANAGER = require.resolve('kafkajs/src/producer/eosManager');

const EDITS: [string, string][] = [
  [
    'async sendOffsets({ consumerGroupId, topics }) {',
    'async sendOffsets({ consumerGroupId, topics, consumerGroupMetadata }) {',
  ],
  [
    `            await groupCoordinator.txnOffsetCommit({
              transactionalId,
              producerId,
              producerEpoch,
              groupId: consumerGroupId,
              topics,
            })`,
    `            await groupCoordinator.txnOffsetCommit({
              transactionalId,
              producerId,
              producerEpoch,
              groupId: consumerGroupId,
              topics,
              ...consumerGroupMetadata,
            })`,
  ],
  [
    `        await transactionCoordinator.addOffsetsToTxn({
          transactionalId,
          producerId,
          producerEpoch,
          groupId: consumerGroupId,
        })`,
    `        await untilNotConcurrent(() =>
          transactionCoordinator.addOffsetsToTxn({
            transactionalId,
            producerId,
            producerEpoch,
            groupId: consumerGroupId,
          })
        )`,
  ],
  [
    `  const findTransactionCoordinator = () => {
    return cluster.findGroupCoordinator({
      groupId: transactionalId,
      coordinatorType: COORDINATOR_TYPES.TRANSACTION,
    })
  }`,
    `  const coordinators = new Map()
  const findCoordinator = (groupId, coordinatorType) => {
    const key = coordinatorType + ':' + groupId
    if (!coordinators.has(key)) {
      const found = cluster.findGroupCoordinator({ groupId, coordinatorType }).then(
        broker => rememberedCoordinator(broker, () => coordinators.get(key) === found && coordinators.delete(key)),
        error => {
          if (coordinators.get(key) === found) coordinators.delete(key)
          throw error
        }
      )
      coordinators.set(key, found)
    }
    return coordinators.get(key)
  }
  const findTransactionCoordinator = () => findCoordinator(transactionalId, COORDINATOR_TYPES.TRANSACTION)`,
  ],
  [
    `        let groupCoordinator = await cluster.findGroupCoordinator({
          groupId: consumerGroupId,
          coordinatorType: COORDINATOR_TYPES.GROUP,
        })`,
    `        let groupCoordinator = await findCoordinator(consumerGroupId, COORDINATOR_TYPES.GROUP)`,
  ],
  [
    `              groupCoordinator = await cluster.findGroupCoordinator({
                groupId: consumerGroupId,
                coordinatorType: COORDINATOR_TYPES.GROUP,
              })`,
    `              groupCoordinator = await findCoordinator(consumerGroupId, COORDINATOR_TYPES.GROUP)`,
  ],
];

/** A broker whose failing requests (but CONCURRENT_TRANSACTIONS) make the producer look its coordinator up again. */
const REMEMBERED = `
const rememberedCoordinator = (broker, forget) =>
  new Proxy(broker, {
    get(target, property) {
      const value = target[property]
      if (typeof value !== 'function') return value
      return (...args) => {
        const result = value.apply(target, args)
        if (!result || typeof result.then !== 'function') return result
        return result.catch(error => {
          if (error.type !== 'CONCURRENT_TRANSACTIONS') forget()
          throw error
        })
      }
    },
  })
`;

/**
 * Retries a coordinator request that CONCURRENT_TRANSACTIONS refused, as the Java client does. Not the manager's own
 * `retrier`: that one follows the client's retry settings (100 ms first), not the producer's, and the refusal only
 * lasts while the previous commit's markers are written.
 */
const UNTIL_NOT_CONCURRENT = `
const untilNotConcurrent = async request => {
  for (let attempt = 0; ; attempt++) {
    try {
      return await request()
    } catch (error) {
      if (error.type !== 'CONCURRENT_TRANSACTIONS' || attempt >= 10) throw error
      await new Promise(resolve => setTimeout(resolve, Math.min(1000, 20 * 2 ** attempt)))
    }
  }
}
`;

export function patchEosManager(source: string): string {
  return applyEdits('transactions', source, EDITS) + REMEMBERED + UNTIL_NOT_CONCURRENT;
}

replaceKafkajsModule('transactions', EOS_MANAGER, patchEosManager);
