import { Admin, ITopicConfig } from 'kafkajs';
import { AppConfig } from '@app/config';

export class TopicLayoutError extends Error {}

/**
 * Creates the pipeline's topics when missing. The txns changelog must have as many partitions as the commands
 * topic: a processor restores partition p of one from partition p of the other.
 */
export async function ensureTopics(admin: Admin, config: AppConfig): Promise<void> {
  const replicationFactor = config.KAFKA_REPLICATION_FACTOR;
  const wanted: ITopicConfig[] = [
    { topic: config.KAFKA_TOPIC_COMMANDS, numPartitions: config.KAFKA_COMMAND_PARTITIONS, replicationFactor },
    {
      topic: config.KAFKA_TOPIC_TXNS,
      numPartitions: config.KAFKA_COMMAND_PARTITIONS,
      replicationFactor,
      configEntries: [
        { name: 'cleanup.policy', value: 'compact,delete' },
        { name: 'retention.ms', value: String(config.TXN_WINDOW_MS) },
      ],
    },
    { topic: config.KAFKA_TOPIC_EVENTS, numPartitions: config.KAFKA_EVENT_PARTITIONS, replicationFactor },
    { topic: config.KAFKA_TOPIC_DEAD_LETTERS, numPartitions: 1, replicationFactor },
  ];
  const existing = new Set(await admin.listTopics());
  const missing = wanted.filter(({ topic }) => !existing.has(topic));
  if (missing.length > 0) {
    try {
      await admin.createTopics({ topics: missing, waitForLeaders: true });
    } catch (error) {
      // Another instance may have created them at the same moment; the check below settles it.
      if (!String(error).includes('already exists')) throw error;
    }
  }
  const metadata = await admin.fetchTopicMetadata({ topics: [config.KAFKA_TOPIC_COMMANDS, config.KAFKA_TOPIC_TXNS] });
  const [commands, txns] = metadata.topics.map((topic) => topic.partitions.length);
  if (commands !== txns) {
    throw new TopicLayoutError(
      `${config.KAFKA_TOPIC_COMMANDS} has ${commands} partitions but ${config.KAFKA_TOPIC_TXNS} has ${txns}: they must match`,
    );
  }
}
