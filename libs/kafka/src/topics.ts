import { Logger } from '@nestjs/common';
import { Admin, ConfigResourceTypes, ITopicConfig } from 'kafkajs';
import { AppConfig } from '@app/config';

export class TopicLayoutError extends Error {}

/** Something about an existing topic that risks data but does not stop the pipeline: logged, and a metric. */
export interface TopicWarning {
  topic: string;
  problem: 'finite_retention' | 'low_replication';
  detail: string;
}

export interface TopicLayout {
  /** Partitions of the co-partitioned topics. */
  partitions: number;
  /** The replication factor topics are created with (reply topics included). */
  replicationFactor: number;
  warnings: TopicWarning[];
}

/** The replication factor for new topics: KAFKA_REPLICATION_FACTOR, else min(3, brokers in the cluster). */
export async function replicationFactorFor(admin: Admin, config: AppConfig): Promise<number> {
  if (config.KAFKA_REPLICATION_FACTOR !== undefined) return config.KAFKA_REPLICATION_FACTOR;
  const { brokers } = await admin.describeCluster();
  return Math.min(3, brokers.length);
}

/** Settings every created topic gets: with three replicas or more, a write needs two of them (acks=all). */
export function durabilityEntries(replicationFactor: number): { name: string; value: string }[] {
  return replicationFactor >= 3 ? [{ name: 'min.insync.replicas', value: '2' }] : [];
}

/**
 * Creates the pipeline's topics when missing and checks their layout. The commands topic, its changelog, the
 * annotations topic and its changelog must have the same number of partitions: a processor restores partition p
 * of its input from partition p of its changelog (a mismatch is fatal). An event log with a time limit, or topics
 * replicated less than the cluster allows, are warnings: they were created by hand, and changing them is the
 * operator's call.
 */
export async function ensureTopics(admin: Admin, config: AppConfig, logger = new Logger('Topics')): Promise<TopicLayout> {
  const replicationFactor = await replicationFactorFor(admin, config);
  const durable = durabilityEntries(replicationFactor);
  const numPartitions = config.KAFKA_COMMAND_PARTITIONS;
  const windowed = [
    { name: 'cleanup.policy', value: 'compact,delete' },
    { name: 'retention.ms', value: String(config.TXN_WINDOW_MS) },
  ];
  // A command older than the window is never appended (it can no longer be deduplicated): no need to keep it longer.
  const forTheWindow = [{ name: 'retention.ms', value: String(config.TXN_WINDOW_MS) }];
  const coPartitioned: ITopicConfig[] = [
    { topic: config.KAFKA_TOPIC_COMMANDS, numPartitions, configEntries: forTheWindow },
    { topic: config.KAFKA_TOPIC_TXNS, numPartitions, configEntries: windowed },
    { topic: config.KAFKA_TOPIC_ANNOTATIONS, numPartitions, configEntries: forTheWindow },
    // Annotation holders stay until redacted, so this changelog is compacted, never expired by time.
    { topic: config.KAFKA_TOPIC_ANNOTATION_STATE, numPartitions, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
  ];
  const wanted: ITopicConfig[] = [
    ...coPartitioned,
    // The source of truth: kept forever unless KAFKA_EVENTS_RETENTION_MS says otherwise.
    { topic: config.KAFKA_TOPIC_EVENTS, numPartitions: config.KAFKA_EVENT_PARTITIONS, configEntries: [{ name: 'retention.ms', value: String(config.KAFKA_EVENTS_RETENTION_MS) }] },
    { topic: config.KAFKA_TOPIC_DEAD_LETTERS, numPartitions: 1 },
  ].map((topic) => ({ ...topic, replicationFactor, configEntries: [...(topic.configEntries ?? []), ...durable] }));
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
  const metadata = await admin.fetchTopicMetadata({ topics: wanted.map(({ topic }) => topic) });
  const byName = new Map(metadata.topics.map((topic) => [topic.name, topic]));
  const counts = coPartitioned.map(({ topic }) => `${topic}=${byName.get(topic)?.partitions.length}`);
  const first = byName.get(config.KAFKA_TOPIC_COMMANDS)!.partitions.length;
  if (coPartitioned.some(({ topic }) => byName.get(topic)?.partitions.length !== first)) {
    throw new TopicLayoutError(`these topics must have the same number of partitions: ${counts.join(', ')}`);
  }

  const warnings: TopicWarning[] = [];
  for (const { topic } of wanted) {
    const replicas = Math.min(...(byName.get(topic)?.partitions.map((p) => p.replicas.length) ?? [0]));
    if (replicas < replicationFactor) {
      warnings.push({ topic, problem: 'low_replication', detail: `${replicas} replica(s) where the cluster allows ${replicationFactor}` });
    }
  }
  const retention = await topicConfig(admin, config.KAFKA_TOPIC_EVENTS, 'retention.ms');
  if (retention !== String(config.KAFKA_EVENTS_RETENTION_MS)) {
    warnings.push({
      topic: config.KAFKA_TOPIC_EVENTS,
      problem: 'finite_retention',
      detail: `retention.ms=${retention} where KAFKA_EVENTS_RETENTION_MS is ${config.KAFKA_EVENTS_RETENTION_MS}: events older than that are deleted`,
    });
  }
  for (const warning of warnings) logger.warn(`topic ${warning.topic}: ${warning.detail}`);
  return { partitions: first, replicationFactor, warnings };
}

async function topicConfig(admin: Admin, topic: string, name: string): Promise<string | undefined> {
  const { resources } = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: [name] }],
  });
  return resources[0]?.configEntries.find((entry) => entry.configName === name)?.configValue;
}
