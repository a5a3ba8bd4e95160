import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Admin, Kafka } from 'kafkajs';
import { AppConfig } from '@app/config';
import { SendReply } from '@app/contracts';
import { BatchingProducer, createKafka, ensureTopics, TransactionalProcessor } from '@app/kafka';
import { AnnotationHandler } from '../annotations/annotation-handler';
import { AnnotationState } from '../annotations/annotation-state';
import { DedupState } from '../dedup/dedup-state';
import { SendHandler } from './send-handler';

/** How often remembered transactions older than the window are dropped from memory. */
const SWEEP_INTERVAL_MS = 60_000;

/**
 * The consumer process: the send stage (commands → events, dedup) and the annotation stage (annotation
 * uniqueness), each an exactly-once processor over its own topic, sharing one producer for replies.
 */
@Injectable()
export class PipelineService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(PipelineService.name);
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly replies: BatchingProducer;
  private sends?: TransactionalProcessor<DedupState>;
  private annotations?: TransactionalProcessor<AnnotationState>;
  private sweeper?: NodeJS.Timeout;

  constructor(private readonly config: AppConfig) {
    this.kafka = createKafka(config, `${config.KAFKA_CLIENT_ID}-consumer`);
    this.admin = this.kafka.admin();
    this.replies = new BatchingProducer(this.kafka, config.PRODUCER_LINGER_MS, config.PRODUCER_MAX_BATCH);
  }

  get isReady(): boolean {
    return (this.sends?.isReady ?? false) && (this.annotations?.isReady ?? false);
  }

  async onModuleInit(): Promise<void> {
    const config = this.config;
    await this.admin.connect();
    const partitions = await ensureTopics(this.admin, config);
    await this.replies.connect();
    const sendReply = (to: string, reply: SendReply): void => {
      // A reply that cannot be delivered (its gateway is gone) is not retried: the client retries the transaction.
      this.replies.send(to, { value: JSON.stringify(reply) }).catch(() => undefined);
    };
    const common = { partitionsConcurrently: config.CONSUMER_PARTITIONS_CONCURRENTLY, sessionTimeoutMs: config.CONSUMER_SESSION_TIMEOUT_MS };
    this.sends = new TransactionalProcessor(
      this.kafka,
      { name: 'SendStage', groupId: config.KAFKA_CONSUMER_GROUP, inputTopic: config.KAFKA_TOPIC_COMMANDS, changelogTopic: config.KAFKA_TOPIC_TXNS, ...common },
      new SendHandler(
        { events: config.KAFKA_TOPIC_EVENTS, txns: config.KAFKA_TOPIC_TXNS, annotations: config.KAFKA_TOPIC_ANNOTATIONS, deadLetters: config.KAFKA_TOPIC_DEAD_LETTERS },
        partitions,
        config.TXN_WINDOW_MS,
        sendReply,
      ),
    );
    this.annotations = new TransactionalProcessor(
      this.kafka,
      {
        name: 'AnnotationStage',
        groupId: `${config.KAFKA_CONSUMER_GROUP}.annotations`,
        inputTopic: config.KAFKA_TOPIC_ANNOTATIONS,
        changelogTopic: config.KAFKA_TOPIC_ANNOTATION_STATE,
        ...common,
      },
      new AnnotationHandler(
        { events: config.KAFKA_TOPIC_EVENTS, state: config.KAFKA_TOPIC_ANNOTATION_STATE, deadLetters: config.KAFKA_TOPIC_DEAD_LETTERS },
        config.TXN_WINDOW_MS,
        sendReply,
      ),
    );
    await Promise.all([this.sends.start(), this.annotations.start()]);
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([this.sends?.stop(), this.annotations?.stop()]);
    await this.replies.disconnect().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
  }

  private async sweep(): Promise<void> {
    const states = [...((await this.sends?.states()) ?? []), ...((await this.annotations?.states()) ?? [])];
    const forgotten = states.reduce((sum, state) => sum + state.sweep(), 0);
    if (forgotten > 0) this.logger.debug(`forgot ${forgotten} transactions older than the window`);
  }
}
