/** The names and sizes of the pipeline's topics, as configured. */
export interface TopicSettings {
  commands: string;
  txns: string;
  events: string;
  deadLetters: string;
  annotations: string;
  annotationState: string;
  /** Partitions of the commands topic and of the topics co-partitioned with it. */
  commandPartitions: number;
  eventPartitions: number;
  /** How long transactions are remembered: commands and changelogs need not be kept longer. */
  txnWindowMs: number;
  /** Retention of the event log: -1, forever. */
  eventsRetentionMs: number;
}

/**
 * The pipeline's topics, as `ensureTopics` of libs/kafka takes them: one layout for both apps, whichever starts
 * first creates them. Co-partitioned topics must have the same number of partitions: a stage restores partition p
 * of its input from partition p of its changelog, and the send stage writes partition p of the annotations topic.
 */
export function pipelineTopics(settings: TopicSettings) {
  const retention = (ms: number) => ({ name: 'retention.ms', value: String(ms) });
  // A command older than the window is never appended (it can no longer be deduplicated): no need to keep it longer.
  const forTheWindow = [retention(settings.txnWindowMs)];
  const coPartitioned = [
    { topic: settings.commands, numPartitions: settings.commandPartitions, configEntries: forTheWindow },
    {
      topic: settings.txns,
      numPartitions: settings.commandPartitions,
      configEntries: [{ name: 'cleanup.policy', value: 'compact,delete' }, ...forTheWindow],
    },
    { topic: settings.annotations, numPartitions: settings.commandPartitions, configEntries: forTheWindow },
    // Annotation holders stay until redacted, so this changelog is compacted, never expired by time.
    {
      topic: settings.annotationState,
      numPartitions: settings.commandPartitions,
      configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
    },
  ];
  const events = {
    topic: settings.events,
    numPartitions: settings.eventPartitions,
    // The source of truth: kept forever unless configured otherwise.
    configEntries: [retention(settings.eventsRetentionMs)],
    expected: {
      ...retention(settings.eventsRetentionMs),
      problem: 'finite_retention' as const,
      risk: 'events older than that are deleted',
    },
  };
  return {
    topics: [
      ...coPartitioned,
      events,
      { topic: settings.deadLetters, numPartitions: 1, configEntries: [] as { name: string; value: string }[] },
    ],
    coPartitioned: coPartitioned.map(({ topic }) => topic),
  };
}
