import { randomUUID } from 'node:crypto';
import { Kafka, KafkaMessage, Producer } from 'kafkajs';

/** Key of the record that a partition's new owner writes to learn where the changelog ends. */
export const RESTORE_MARKER_KEY = '__restore_marker__';

export interface RestoreTarget {
  partition: number;
  /** Receives each changelog record of the partition, in log order, up to the marker. */
  apply: (message: KafkaMessage) => void;
}

export interface RestoreStats {
  records: number;
  millis: number;
}

/**
 * Writes an end marker into a changelog partition through its owner's transactional producer, and returns the
 * marker's nonce. Called after the producer was initialised, which fenced any previous owner and aborted its
 * open transaction, so every record before the marker is final.
 */
export async function writeRestoreMarker(producer: Producer, topic: string, partition: number): Promise<string> {
  const nonce = randomUUID();
  const tx = await producer.transaction();
  try {
    await tx.send({ topic, acks: -1, messages: [{ key: RESTORE_MARKER_KEY, value: nonce, partition }] });
    await tx.commit();
  } catch (error) {
    await tx.abort().catch(() => undefined);
    throw error;
  }
  return nonce;
}

/**
 * Writes an end marker into each of the given changelog partitions in one idempotent, non-transactional send, and
 * returns each partition's nonce. A read_committed reader only reaches a marker once every transaction that began
 * before it has ended, so every record before a marker is final when the restore reads it.
 */
export async function writeRestoreMarkers(
  producer: Producer,
  topic: string,
  partitions: number[],
): Promise<Map<number, string>> {
  const nonces = new Map(partitions.map((partition) => [partition, randomUUID()]));
  await producer.send({
    topic,
    acks: -1,
    messages: [...nonces].map(([partition, nonce]) => ({ key: RESTORE_MARKER_KEY, value: nonce, partition })),
  });
  return nonces;
}

/**
 * Replays the given partitions of a changelog (read_committed) up to each one's marker. Reading up to our own
 * marker, rather than to a high watermark, is exact even with transaction control records and aborted
 * transactions in the log.
 */
export async function restoreChangelog(
  kafka: Kafka,
  topic: string,
  targets: RestoreTarget[],
  nonces: Map<number, string>,
  keepAlive: () => Promise<void> = async () => undefined,
): Promise<RestoreStats> {
  const started = Date.now();
  const groupId = `${topic}.restore.${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, maxBytesPerPartition: 4 << 20 });
  const pending = new Map(targets.map((target) => [target.partition, target]));
  let records = 0;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const target = pending.get(batch.partition);
        if (!target) {
          consumer.pause([{ topic, partitions: [batch.partition] }]);
          return;
        }
        for (const message of batch.messages) {
          if (message.key?.toString() === RESTORE_MARKER_KEY) {
            if (message.value?.toString() !== nonces.get(batch.partition)) continue; // an older owner's marker
            pending.delete(batch.partition);
            consumer.pause([{ topic, partitions: [batch.partition] }]);
            if (pending.size === 0) finish();
            return;
          }
          target.apply(message);
          records++;
        }
        await keepAlive();
      },
    });
    if (pending.size > 0) await finished;
  } finally {
    // The group committed no offsets, so the broker forgets it on its own once it is empty.
    await consumer.disconnect().catch(() => undefined);
  }
  return { records, millis: Date.now() - started };
}
