/**
 * kafkajs 2.2.4 looks a coordinator up (a FindCoordinator request) before every request of a transaction:
 * AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn, four round trips per transaction that always
 * answer the same broker (the benchmark's cost breakdown counted 0.23 of them per send, about a quarter of all Kafka
 * requests). The Java client remembers its coordinators until a request to one fails. This makes each transactional
 * producer do the same: a coordinator is remembered per (type, id), and forgotten when any request to it fails
 * (a moved coordinator answers NOT_COORDINATOR, a dead one does not answer), so the retry looks it up again.
 * CONCURRENT_TRANSACTIONS, which the coordinator answers while it finishes the previous commit, keeps it.
 */
import { applyEdits, replaceKafkajsModule } from './source-patch';

const EOS_MANAGER = require.resolve('kafkajs/src/producer/eosManager');

const EDITS: [string, string][] = [
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

export function patchEosManager(source: string): string {
  return applyEdits('coordinator-cache', source, EDITS) + REMEMBERED;
}

replaceKafkajsModule('coordinator-cache', EOS_MANAGER, patchEosManager);
