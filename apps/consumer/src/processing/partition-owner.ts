import { Kafka, Producer } from 'kafkajs';
import { decodeTxnRecord } from '@app/contracts';
import { createProducer, restoreChangelog, RestoreStats, writeRestoreMarker } from '@app/kafka';
import { DedupState } from '../dedup/dedup-state';

/**
 * What this process holds for one partition of the commands topic while it owns it: a transactional producer
 * whose id is tied to the partition (initialising it fences the previous owner, kafkajs' way of stopping
 * zombies) and the dedup state restored from the same partition of the changelog.
 */
export class PartitionOwner {
  readonly state: DedupState;

  private constructor(
    readonly partition: number,
    readonly producer: Producer,
    windowMs: number,
  ) {
    this.state = new DedupState(windowMs);
  }

  static transactionalId(group: string, topic: string, partition: number): string {
    return `${group}.${topic}.${partition}`;
  }

  /** Takes over partitions: fence previous owners, then restore each one's state up to a fresh marker. */
  static async acquire(
    kafka: Kafka,
    options: { group: string; commandsTopic: string; txnsTopic: string; windowMs: number },
    partitions: number[],
    keepAlive: () => Promise<void>,
  ): Promise<{ owners: PartitionOwner[]; stats: RestoreStats }> {
    const owners = await Promise.all(
      partitions.map(async (partition) => {
        const producer = createProducer(kafka, {
          transactionalId: PartitionOwner.transactionalId(options.group, options.commandsTopic, partition),
          idempotent: true,
          maxInFlightRequests: 1,
          transactionTimeout: 30000,
        });
        await producer.connect();
        return new PartitionOwner(partition, producer, options.windowMs);
      }),
    );
    try {
      const markers = new Map(
        await Promise.all(
          owners.map(async (owner) => [owner.partition, await writeRestoreMarker(owner.producer, options.txnsTopic, owner.partition)] as const),
        ),
      );
      const stats = await restoreChangelog(
        kafka,
        options.txnsTopic,
        owners.map((owner) => ({
          partition: owner.partition,
          apply: (message) => {
            const identity = message.key?.toString();
            if (identity) owner.state.apply(identity, decodeTxnRecord(message.value));
          },
        })),
        markers,
        keepAlive,
      );
      return { owners, stats };
    } catch (error) {
      await Promise.all(owners.map((owner) => owner.release()));
      throw error;
    }
  }

  async release(): Promise<void> {
    await this.producer.disconnect().catch(() => undefined);
  }
}
