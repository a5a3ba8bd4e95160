import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Admin, Kafka } from 'kafkajs';
import { AppConfig, topicSettings } from '@app/config';
import { pipelineTopics } from '@app/contracts';
import {
  ensureTopics,
  PartitionHandler,
  ProcessorObserver,
  TopicLayoutError,
  TransactionalProcessor,
  untilConnected,
} from '@app/kafka';
import { consumerMetrics, kafkaMetrics, Readiness, reportReadiness, reportStateEntries } from '@app/observability';
import { AnnotationStage } from './annotations/annotation-stage';
import { AnnotationStore } from './annotations/annotation-store';
import { SendStage } from './send/send-stage';
import { ReplyPublisher } from './stage/reply-publisher';
import { OutcomeCounts, StageHandler } from './stage/stage-handler';
import { ESTIMATED_BYTES_PER_ENTRY, StateBudget } from './store/state-budget';
import { TxnStore } from './store/txn-store';

/** How often remembered transactions older than the window are dropped from memory. */
const SWEEP_INTERVAL_MS = 60_000;

const observerFor = (stage: string): ProcessorObserver => ({
  batch: (records, seconds, committed, written) => {
    consumerMetrics.recordsWritten.inc({ stage }, written);
    consumerMetrics.batchSize.observe({ stage }, records);
    consumerMetrics.batchDuration.observe({ stage }, seconds);
  },
  transaction: (committed) => consumerMetrics.transactions.inc({ stage, outcome: committed ? 'committed' : 'aborted' }),
  restored: (stats) => {
    consumerMetrics.restoreDuration.observe({ stage }, stats.millis / 1000);
    consumerMetrics.restoredRecords.inc({ stage }, stats.records);
  },
  lag: (partition, records) => consumerMetrics.lag.set({ stage, partition: String(partition) }, records),
  // Another process reports a partition once it moves there: a stale reading here would add up to a false lag.
  released: (partitions) =>
    partitions.forEach((partition) => consumerMetrics.lag.remove({ stage, partition: String(partition) })),
});

const countsFor =
  (stage: string) =>
  (counts: OutcomeCounts): void => {
    consumerMetrics.events.inc({ stage }, counts.accepted);
    consumerMetrics.dedupHits.inc(counts.duplicates);
    consumerMetrics.annotationRejections.inc(counts.rejected);
    consumerMetrics.deadLetters.inc({ stage }, counts.deadLetters + counts.expired);
    consumerMetrics.expiredCommands.inc({ stage }, counts.expired);
    consumerMetrics.stateRefusals.inc({ stage }, counts.refused);
  };

/**
 * The consumer process: the send stage (commands → events, dedup) and the annotation stage (annotation
 * uniqueness), each an exactly-once processor over its own topic, sharing one producer for replies and one memory
 * budget. Connects in the background: live at once, ready once both stages have restored their partitions.
 */
@Injectable()
export class PipelineService implements Readiness, OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(PipelineService.name);
  private readonly admin: Admin;
  private sends?: TransactionalProcessor<TxnStore>;
  private annotations?: TransactionalProcessor<AnnotationStore>;
  private sweeper?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly config: AppConfig,
    private readonly kafka: Kafka,
    private readonly budget: StateBudget,
    private readonly replies: ReplyPublisher,
    private readonly sendStage: SendStage,
    private readonly annotationStage: AnnotationStage,
  ) {
    this.admin = kafka.admin();
    const size = (states: { size: number }[] = []) => states.reduce((sum, state) => sum + state.size, 0);
    consumerMetrics.stateBudget.set(budget.maxEntries);
    reportStateEntries(
      async () => ({ send: size(await this.sends?.states()), annotation: size(await this.annotations?.states()) }),
      ESTIMATED_BYTES_PER_ENTRY,
    );
    reportReadiness('send', () => this.sends?.isReady ?? false);
    reportReadiness('annotation', () => this.annotations?.isReady ?? false);
  }

  get isReady(): boolean {
    return (this.sends?.isReady ?? false) && (this.annotations?.isReady ?? false);
  }

  onModuleInit(): void {
    untilConnected(
      this.logger,
      'consumer',
      () => this.connect(),
      (error) => error instanceof TopicLayoutError,
      () => this.stopped,
    ).then(
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
    const { partitions, warnings } = await ensureTopics(
      this.admin,
      pipelineTopics(topicSettings(config)),
      config.KAFKA_REPLICATION_FACTOR,
    );
    for (const { topic, problem } of warnings) kafkaMetrics.topicWarnings.set({ topic, problem }, 1);
    const options = {
      partitions,
      windowMs: config.TXN_WINDOW_MS,
      deadLetterTopic: config.KAFKA_TOPIC_DEAD_LETTERS,
      budget: this.budget,
      sendReply: this.replies.send,
    };
    // A failed start (one stage up, the other not) must not leave the first consuming while the retry builds anew.
    try {
      this.sends = this.processor(
        'send',
        config.KAFKA_CONSUMER_GROUP,
        config.KAFKA_TOPIC_COMMANDS,
        this.sendStage.changelogTopic,
        new StageHandler(this.sendStage, { ...options, observe: countsFor('send') }),
      );
      this.annotations = this.processor(
        'annotation',
        `${config.KAFKA_CONSUMER_GROUP}.annotations`,
        config.KAFKA_TOPIC_ANNOTATIONS,
        this.annotationStage.changelogTopic,
        new StageHandler(this.annotationStage, { ...options, observe: countsFor('annotation') }),
      );
      await Promise.all([this.sends.start(), this.annotations.start()]);
    } catch (error) {
      await this.stopStages();
      throw error;
    }
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  /** A stage as an exactly-once processor: its own consumer group over its input topic, its changelog beside. */
  private processor<S>(
    stage: string,
    groupId: string,
    inputTopic: string,
    changelogTopic: string,
    handler: PartitionHandler<S>,
  ): TransactionalProcessor<S> {
    return new TransactionalProcessor(
      this.kafka,
      {
        name: `${stage[0].toUpperCase()}${stage.slice(1)}Stage`,
        groupId,
        inputTopic,
        changelogTopic,
        observer: observerFor(stage),
        partitionsConcurrently: this.config.CONSUMER_PARTITIONS_CONCURRENTLY,
        sessionTimeoutMs: this.config.CONSUMER_SESSION_TIMEOUT_MS,
        fetchMinBytes: this.config.CONSUMER_FETCH_MIN_BYTES,
        fetchMaxWaitMs: this.config.CONSUMER_FETCH_MAX_WAIT_MS,
        maxRequestBytes: this.config.KAFKA_MAX_REQUEST_BYTES,
        transactionTimeoutMs: this.config.CONSUMER_TRANSACTION_TIMEOUT_MS,
        // Never live but never ready again: a stage that cannot go on ends the process, and its supervisor starts
        // a new one (npm start, compose and Kubernetes all restart it), which takes the partitions over cleanly.
        onFatal: (error: Error) => {
          this.logger.fatal(`${error.message}; exiting so that a new process takes over`);
          process.exit(1);
        },
      },
      handler,
    );
  }

  private async stopStages(): Promise<void> {
    await Promise.all([this.sends?.stop(), this.annotations?.stop()]);
    this.sends = undefined;
    this.annotations = undefined;
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
