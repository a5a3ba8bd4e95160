import { Logger } from '@nestjs/common';
import { Admin, ConfigResourceTypes, ITopicConfig } from 'kafkajs';

export class TopicLayoutError extends Error {}

/** A topic to create when it is missing, and to check when it exists. */
export interface TopicSpec {
  topic: string;
  numPartitions: number;
  configEntries: { name: string; value: string }[];
  /** A setting an existing topic must have, or data is at risk: a warning (log and metric) when it differs. */
  expected?: { name: string; value: string; problem: 'finite_retention'; risk: string };
}

export interface TopicLayoutSpec {
  topics: TopicSpec[];
  /**
   * Topics that must have the same number of partitions (a processor restores partition p of its input from
   * partition p of its changelog).
   */
  coPartitioned: string[];
}

/** Something about an existing topic that risks data but does not stop the pipeline: logged, and a metric. */
export interface TopicWarning {
  topic: string;
  problem: 'finite_retention' | 'low_replication';
  detail: string;
}

export interface TopicLayout {
  /** Partitions of each co-partitioned topic. */
  partitions: number;
  /** The replication factor topics are created with (reply topics included). */
  replicationFactor: number;
  warnings: TopicWarning[];
}

/** The replication factor for new topics: the one configured, else min(3, brokers in the cluster). */
export async function replicationFactorFor(admin: Admin, configured: number | undefined): Promise<number> {
  if (configured !== undefined) return configured;
  const { brokers } = await admin.describeCluster();
  return Math.min(3, brokers.length);
}

/** Settings every created topic gets: with three replicas or more, a write needs two of them (acks=all). */
export function durabilityEntries(replicationFactor: number): { name: string; value: string }[] {
  return replicationFactor >= 3 ? [{ name: 'min.insync.replicas', value: '2' }] : [];
}

/**
 * Creates the topics of a layout when missing and checks the ones that exist. Co-partitioned topics of different
 * sizes are fatal. A topic without a setting it is expected to have, or replicated less than the cluster allows,
 * is a warning: it was created by hand, and changing it is the operator's call.
 */
export async function ensureTopics(
  admin: Admin,
  layout: TopicLayoutSpec,
  configuredReplicationFactor: number | undefined,
  logger = new Logger('Topics'),
): Promise<TopicLayout> {
  const replicationFactor = await replicationFactorFor(admin, configuredReplicationFactor);
  const durable = durabilityEntries(replicationFactor);
  const wanted: ITopicConfig[] = layout.topics.map(({ topic, numPartitions, configEntries }) => ({
    topic,
    numPartitions,
    replicationFactor,
    configEntries: [...configEntries, ...durable],
  }));
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
  const sizes = layout.coPartitioned.map((topic) => byName.get(topic)?.partitions.length);
  if (sizes.some((size) => size !== sizes[0])) {
    const counts = layout.coPartitioned.map((topic, i) => `${topic}=${sizes[i]}`);
    throw new TopicLayoutError(`these topics must have the same number of partitions: ${counts.join(', ')}`);
  }

  const warnings: TopicWarning[] = [];
  for (const { topic } of wanted) {
    const replicas = Math.min(...(byName.get(topic)?.partitions.map((p) => p.replicas.length) ?? [0]));
    if (replicas < replicationFactor) {
      warnings.push({
        topic,
        problem: 'low_replication',
        detail: `${replicas} replica(s) where the cluster allows ${replicationFactor}`,
      });
    }
  }
  for (const { topic, expected } of layout.topics) {
    if (!expected) continue;
    const actual = await topicConfig(admin, topic, expected.name);
    if (actual !== expected.value) {
      warnings.push({
        topic,
        problem: expected.problem,
        detail: `${expected.name}=${actual} where ${expected.value} is expected: ${expected.risk}`,
      });
    }
  }
  for (const warning of warnings) logger.warn(`topic ${warning.topic}: ${warning.detail}`);
  return { partitions: sizes[0] ?? 0, replicationFactor, warnings };
}

async function topicConfig(admin: Admin, topic: string, name: string): Promise<string | undefined> {
  const { resources } = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: [name] }],
  });
  return resources[0]?.configEntries.find((entry) => entry.configName === name)?.configValue;
}
