import { Admin, ITopicConfig } from 'kafkajs';
import { AppConfig } from '@app/config';

export class TopicLayoutError extends Error {}

/**
 * Creates the pipeline's topics when missing and checks their layout. The commands topic, its changelog, the
 * annotations topic and its changelog must have the same number of partitions: a processor restores partition p
 * of its input from partition p of its changelog. Returns that number.
 */
export async function ensureTopics(admin: Admin, config: AppConfig): Promise<number> {
  const replicationFactor = config.KAFKA_REPLICATION_FACTOR;
  const numPartitions = config.KAFKA_COMMAND_PARTITIONS;
  const windowed = [
    { name: 'cleanup.policy', value: 'compact,delete' },
    { name: 'retention.ms', value: String(config.TXN_WINDOW_MS) },
  ];
  // A command older than the window is never appended (it can no longer be deduplicated): no need to keep it longer.
  const forTheWindow = [{ name: 'retention.ms', value: String(config.TXN_WINDOW_MS) }];
  const coPartitioned: ITopicConfig[] = [
    { topic: config.KAFKA_TOPIC_COMMANDS, numPartitions, replicationFactor, configEntries: forTheWindow },
    { topic: config.KAFKA_TOPIC_TXNS, numPartitions, replicationFactor, configEntries: windowed },
    { topic: config.KAFKA_TOPIC_ANNOTATIONS, numPartitions, replicationFactor, configEntries: forTheWindow },
    // Annotation holders stay until redacted, so this changelog is compacted, never expired by time.
    { topic: config.KAFKA_TOPIC_ANNOTATION_STATE, numPartitions, replicationFactor, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
  ];
  const wanted: ITopicConfig[] = [
    ...coPartitioned,
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
  const metadata = await admin.fetchTopicMetadata({ topics: coPartitioned.map(({ topic }) => topic) });
  const counts = metadata.topics.map((topic) => `${topic.name}=${topic.partitions.length}`);
  const first = metadata.topics[0].partitions.length;
  if (metadata.topics.some((topic) => topic.partitions.length !== first)) {
    throw new TopicLayoutError(`these topics must have the same number of partitions: ${counts.join(', ')}`);
  }
  return first;
}
