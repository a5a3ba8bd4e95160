import type { TopicSettings } from '@app/contracts';
import { AppConfig } from './app-config';

/** The pipeline's topic names and sizes from the configuration, for the layout in libs/contracts. */
export function topicSettings(config: AppConfig): TopicSettings {
  return {
    commands: config.KAFKA_TOPIC_COMMANDS,
    txns: config.KAFKA_TOPIC_TXNS,
    events: config.KAFKA_TOPIC_EVENTS,
    deadLetters: config.KAFKA_TOPIC_DEAD_LETTERS,
    annotations: config.KAFKA_TOPIC_ANNOTATIONS,
    annotationState: config.KAFKA_TOPIC_ANNOTATION_STATE,
    commandPartitions: config.KAFKA_COMMAND_PARTITIONS,
    eventPartitions: config.KAFKA_EVENT_PARTITIONS,
    txnWindowMs: config.TXN_WINDOW_MS,
    eventsRetentionMs: config.KAFKA_EVENTS_RETENTION_MS,
  };
}
