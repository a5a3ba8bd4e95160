import '@app/kafka'; // before kafkajs: patches its read_committed filter
import { Partitioners } from 'kafkajs';
import { commandKey } from '@app/contracts';
import { scopeHash } from '@app/matrix';
import { TEST_SCOPE_HASH_SECRET } from './pipeline';

const partitioner = Partitioners.DefaultPartitioner();

/** The commands-topic partition a sender's txnId lands on (the gateway's partitioner, murmur2). */
export function commandPartition(
  user: { user_id: string; device_id: string },
  txnId: string,
  partitions: number,
): number {
  const key = commandKey(
    scopeHash({ userId: user.user_id, deviceId: user.device_id }, Buffer.from(TEST_SCOPE_HASH_SECRET)),
    txnId,
  );
  return partitioner({
    topic: 'commands',
    partitionMetadata: Array.from({ length: partitions }, (_, partitionId) => ({
      partitionId,
      leader: 0,
      partitionErrorCode: 0,
      replicas: [0],
      isr: [0],
    })),
    message: { key, value: null },
  });
}

/** A txnId with the given prefix that lands on another partition than `avoid`. */
export function txnIdOnAnotherPartition(
  user: { user_id: string; device_id: string },
  prefix: string,
  avoid: number,
  partitions: number,
): string {
  for (let i = 0; ; i++) {
    const txnId = `${prefix}-${i}`;
    if (commandPartition(user, txnId, partitions) !== avoid) return txnId;
  }
}
