import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Admin, Kafka } from 'kafkajs';
import { AppConfig } from '@app/config';
import { SendReply } from '@app/contracts';
import { BatchingProducer, createKafka, ensureTopics, ProcessorObserver, TopicLayoutError, TransactionalProcessor, TransactionalProcessorOptions, untilConnected } from '@app/kafka';
import { consumerMetrics, gatewayMetrics, kafkaMetrics, reportReadiness, reportStateEntries } from '@app/observability';
import { AnnotationHandler } from '../annotations/annotation-handler';
import { AnnotationState } from '../annotations/annotation-state';
import { DedupState } from '../dedup/dedup-state';
import { ESTIMATED_BYTES_PER_ENTRY, StateBudget } from '../state/state-budget';
import { SendHandler } from './send-handler';

/** How often remembered transactions older than the window are dropped from memory. */
const SWEEP_INTERVAL_MS = 60_000;

const observerFor = (stage: string): ProcessorObserver => ({
  batch: (records, seconds, committed) => {
    consumerMetrics.batchSize.observe({ stage }, records);
    consumerMetrics.batchDuration.observe({ stage }, seconds);
    consumerMetrics.transactions.inc({ stage, outcome: committed ? 'committed' : 'aborted' });
  },
  restored: (stats) => {
    consumerMetrics.restoreDuration.observe({ stage }, stats.millis / 1000);
    consumerMetrics.restoredRecords.inc({ stage }, stats.records);
  },
  lag: (partition, records) => consumerMetrics.lag.set({ stage, partition: String(partition) }, records),
  // Another process reports a partition once it moves there: a stale reading here would add up to a false lag.
  released: (partitions) => partitions.forEach((partition) => consumerMetrics.lag.remove({ stage, partition: String(partition) })),
});

/**
 * The consumer process: the send stage (commands → events, dedup) and the annotation stage (annotation
 * uniqueness), each an exactly-once processor over its own topic, sharing one producer for replies. Connects in
 * the background: live at once, ready once both stages have restored their partitions.
 */
@Injectable()
export class PipelineService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(PipelineService.name);
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly replies: BatchingProducer;
  /** One memory bound for every partition state of both stages. */
  private readonly budget: StateBudget;
  private sends?: TransactionalProcessor<DedupState>;
  private annotations?: TransactionalProcessor<AnnotationState>;
  private sweeper?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly config: AppConfig) {
    this.kafka = createKafka(config, `${config.KAFKA_CLIENT_ID}-consumer`);
    this.admin = this.kafka.admin();
    this.replies = new BatchingProducer(this.kafka, {
      name: 'ReplyProducer',
      lingerMs: config.PRODUCER_LINGER_MS,
      maxBatch: config.PRODUCER_MAX_BATCH,
      maxBatchBytes: config.KAFKA_MAX_REQUEST_BYTES,
      observe: (seconds, records) => {
        gatewayMetrics.produceLatency.observe({ client: 'consumer-replies' }, seconds);
        gatewayMetrics.produceBatch.observe({ client: 'consumer-replies' }, records);
      },
      replaced: () => gatewayMetrics.producerReplacements.inc({ client: 'consumer-replies' }),
    });
    const size = (states: { size: number }[] = []) => states.reduce((sum, state) => sum + state.size, 0);
    this.budget = new StateBudget(config.STATE_MAX_ENTRIES);
    consumerMetrics.stateBudget.set(config.STATE_MAX_ENTRIES);
    reportStateEntries(async () => ({ send: size(await this.sends?.states()), annotation: size(await this.annotations?.states()) }), ESTIMATED_BYTES_PER_ENTRY);
    reportReadiness('send', () => this.sends?.isReady ?? false);
    reportReadiness('annotation', () => this.annotations?.isReady ?? false);
  }

  get isReady(): boolean {
    return (this.sends?.isReady ?? false) && (this.annotations?.isReady ?? false);
  }

  onModuleInit(): void {
    untilConnected(this.logger, 'consumer', () => this.connect(), (error) => error instanceof TopicLayoutError, () => this.stopped).then(
      () => undefined,
      (error: unknown) => {
        this.logger.fatal(String(error));
        process.exit(1);
      },
    );
  }

  private async connect(): Promise<void> {
    const config = this.config;
    await this.admin.connect();
    const { partitions, warnings } = await ensureTopics(this.admin, config);
    for (const { topic, problem } of warnings) kafkaMetrics.topicWarnings.set({ topic, problem }, 1);
    const sendReply = (to: string, reply: SendReply): void => {
      // A reply that cannot be delivered (its gateway is gone) is not retried: the client retries the transaction.
      this.replies.send(to, { value: JSON.stringify(reply) }).catch(() => undefined);
    };
    const common = {
      partitionsConcurrently: config.CONSUMER_PARTITIONS_CONCURRENTLY,
      sessionTimeoutMs: config.CONSUMER_SESSION_TIMEOUT_MS,
      fetchMinBytes: config.CONSUMER_FETCH_MIN_BYTES,
      fetchMaxWaitMs: config.CONSUMER_FETCH_MAX_WAIT_MS,
      maxRequestBytes: config.KAFKA_MAX_REQUEST_BYTES,
      // Never live but never ready again: a stage that cannot go on ends the process, and its supervisor starts
      // a new one (npm start, compose and Kubernetes all restart it), which takes the partitions over cleanly.
      onFatal: (error: Error) => {
        this.logger.fatal(`${error.message}; exiting so that a new process takes over`);
        process.exit(1);
      },
    };
    // A failed start (one stage up, the other not) must not leave the first consuming while the retry builds anew.
    try {
      await this.startStages(config, partitions, sendReply, common);
    } catch (error) {
      await this.stopStages();
      throw error;
    }
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  private async stopStages(): Promise<void> {
    await Promise.all([this.sends?.stop(), this.annotations?.stop()]);
    this.sends = undefined;
    this.annotations = undefined;
  }

  private async startStages(
    config: AppConfig,
    partitions: number,
    sendReply: (to: string, reply: SendReply) => void,
    common: Pick<TransactionalProcessorOptions, 'partitionsConcurrently' | 'sessionTimeoutMs' | 'fetchMinBytes' | 'fetchMaxWaitMs' | 'maxRequestBytes' | 'onFatal'>,
  ): Promise<void> {
    this.sends = new TransactionalProcessor(
      this.kafka,
      {
        name: 'SendStage',
        groupId: config.KAFKA_CONSUMER_GROUP,
        inputTopic: config.KAFKA_TOPIC_COMMANDS,
        changelogTopic: config.KAFKA_TOPIC_TXNS,
        observer: observerFor('send'),
        ...common,
      },
      new SendHandler(
        { events: config.KAFKA_TOPIC_EVENTS, txns: config.KAFKA_TOPIC_TXNS, annotations: config.KAFKA_TOPIC_ANNOTATIONS, deadLetters: config.KAFKA_TOPIC_DEAD_LETTERS },
        partitions,
        config.TXN_WINDOW_MS,
        sendReply,
        this.budget,
        (counts) => {
          consumerMetrics.events.inc({ stage: 'send' }, counts.accepted);
          consumerMetrics.dedupHits.inc(counts.duplicates);
          consumerMetrics.deadLetters.inc({ stage: 'send' }, counts.deadLetters + counts.expired);
          consumerMetrics.expiredCommands.inc({ stage: 'send' }, counts.expired);
          consumerMetrics.stateRefusals.inc({ stage: 'send' }, counts.refused);
        },
      ),
    );
    this.annotations = new TransactionalProcessor(
      this.kafka,
      {
        name: 'AnnotationStage',
        groupId: `${config.KAFKA_CONSUMER_GROUP}.annotations`,
        inputTopic: config.KAFKA_TOPIC_ANNOTATIONS,
        changelogTopic: config.KAFKA_TOPIC_ANNOTATION_STATE,
        observer: observerFor('annotation'),
        ...common,
      },
      new AnnotationHandler(
        { events: config.KAFKA_TOPIC_EVENTS, state: config.KAFKA_TOPIC_ANNOTATION_STATE, deadLetters: config.KAFKA_TOPIC_DEAD_LETTERS },
        config.TXN_WINDOW_MS,
        sendReply,
        this.budget,
        (counts) => {
          consumerMetrics.events.inc({ stage: 'annotation' }, counts.accepted);
          consumerMetrics.annotationRejections.inc(counts.rejected);
          consumerMetrics.deadLetters.inc({ stage: 'annotation' }, counts.expired);
          consumerMetrics.expiredCommands.inc({ stage: 'annotation' }, counts.expired);
          consumerMetrics.stateRefusals.inc({ stage: 'annotation' }, counts.refused);
        },
      ),
    );
    await Promise.all([this.sends.start(), this.annotations.start()]);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweeper);
    await this.stopStages();
    await this.replies.disconnect().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
  }

  private async sweep(): Promise<void> {
    const states = [...((await this.sends?.states()) ?? []), ...((await this.annotations?.states()) ?? [])];
    const forgotten = states.reduce((sum, state) => sum + state.sweep(), 0);
    if (forgotten > 0) this.logger.debug(`forgot ${forgotten} transactions older than the window`);
  }
}
