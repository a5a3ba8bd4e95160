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
import { consumerMetrics, kafkaMetrics, Readiness, reportReadiness, reportStateSize } from '@app/observability';
import { AnnotationStage } from './annotations/annotation-stage';
import { AnnotationStore } from './annotations/annotation-store';
import { SendStage } from './send/send-stage';
import { ReplyPublisher } from './stage/reply-publisher';
import { OutcomeCounts, StageHandler } from './stage/stage-handler';
import { StateBudget } from './store/state-budget';
import { StateDirectory } from './store/state-directory';
import { TxnStore } from './store/txn-store';

/** How often remembered transactions older than the window are dropped from the stores. */
const SWEEP_INTERVAL_MS = 60_000;
/**
 * Entries one sweep step deletes, in one SQLite transaction: deleting by expiry touches rows all over the store (a
 * step of 5,000 in a store of 2 M held the event loop 185–312 ms on the loaded 2-core machine, 50,000 1.3–1.7 s).
 */
const SWEEP_CHUNK = 500;

const restoreLogger = new Logger('Restore');

const observerFor = (stage: string): ProcessorObserver => ({
  batch: (records, seconds, committed, written) => {
    consumerMetrics.recordsWritten.inc({ stage }, written);
    consumerMetrics.batchSize.observe({ stage }, records);
    consumerMetrics.batchDuration.observe({ stage }, seconds);
  },
  transaction: (committed) => consumerMetrics.transactions.inc({ stage, outcome: committed ? 'committed' : 'aborted' }),
  restored: (stats) => {
    consumerMetrics.restoreDuration.observe({ stage }, stats.millis / 1000);
    for (const { partition, kind, reason, records } of stats.partitions) {
      consumerMetrics.restores.inc({ stage, kind });
      consumerMetrics.restoredRecords.inc({ stage, kind }, records);
      restoreLogger.log(`${stage} partition ${partition}: ${kind} restore (${reason}), ${records} records replayed`);
    }
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
  private readonly directory: StateDirectory;
  private stopped = false;
  /** Left the groups after a store's disk refused a write; joins again once STATE_DIR takes writes. */
  private suspended = false;

  constructor(
    private readonly config: AppConfig,
    private readonly kafka: Kafka,
    private readonly budget: StateBudget,
    private readonly replies: ReplyPublisher,
    private readonly sendStage: SendStage,
    private readonly annotationStage: AnnotationStage,
  ) {
    this.admin = kafka.admin();
    this.directory = new StateDirectory({
      root: config.STATE_DIR,
      cacheBytesPerStore: config.STATE_CACHE_BYTES,
      cleanupDelayMs: config.STATE_CLEANUP_DELAY_MS,
    });
    this.directory.onRefused = (message) => void this.suspend(message);
    const size = (states: { size: number; bytes: number }[] = []) => ({
      entries: states.reduce((sum, state) => sum + state.size, 0),
      diskBytes: states.reduce((sum, state) => sum + state.bytes, 0),
    });
    consumerMetrics.stateBudget.set(budget.maxEntries);
    consumerMetrics.stateDiskBudget.set(budget.maxDiskBytes);
    consumerMetrics.stateCacheBudget.set(config.STATE_CACHE_BYTES);
    reportStateSize(async () => ({
      send: size(await this.sends?.states()),
      annotation: size(await this.annotations?.states()),
    }));
    reportReadiness('send', () => this.sends?.isReady ?? false);
    reportReadiness('annotation', () => this.annotations?.isReady ?? false);
  }

  get isReady(): boolean {
    return (this.sends?.isReady ?? false) && (this.annotations?.isReady ?? false);
  }

  onModuleInit(): void {
    this.start();
  }

  /** Once STATE_DIR takes writes, joins the consumer groups (retrying Kafka); exits on what retrying cannot fix. */
  private start(): void {
    this.untilStateDirectoryUsable()
      .then(() =>
        untilConnected(
          this.logger,
          'consumer',
          () => this.connect(),
          (error) => error instanceof TopicLayoutError,
          () => this.stopped,
        ),
      )
      .then(
        () => undefined,
        (error: unknown) => {
          this.logger.fatal(String(error));
          process.exit(1);
        },
      );
  }

  /**
   * A state store's disk refused a write (full, read-only, a quota or file-size limit): leaves both consumer groups,
   * so that other consumers take the partitions over, and stays live and not ready until STATE_DIR takes writes
   * again; then joins again, each store replaying from its checkpoint what it missed. Exiting would not help (a new
   * process meets the same disk), and loses nothing either way: what committed is in Kafka.
   */
  private async suspend(message: string): Promise<void> {
    if (this.suspended || this.stopped) return;
    this.suspended = true;
    this.logger.error(`${message}; leaving the consumer groups, not ready until it takes writes again`);
    clearInterval(this.sweeper);
    try {
      await this.stopStages();
    } catch (error) {
      this.logger.warn(`stopping the stages failed: ${String(error)}`);
    }
    this.suspended = false;
    if (!this.stopped) this.start();
  }

  /**
   * A STATE_DIR that cannot be written (permissions, a full disk, a file in the way) keeps the process live and not
   * ready, saying why once a minute, until it can: restarting would not help, and nothing is taken meanwhile.
   */
  private async untilStateDirectoryUsable(): Promise<void> {
    for (let tries = 0; !this.stopped; tries++) {
      try {
        this.directory.prepare();
        if (tries > 0) this.logger.log(`STATE_DIR ${this.config.STATE_DIR} is usable now`);
        return;
      } catch (error) {
        if (tries % 12 === 0) this.logger.error(`${(error as Error).message}; not ready until it is`);
        await new Promise((resolve) => setTimeout(resolve, 5000));
      }
    }
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
    // Both stages may own every partition: the cache budget is split so that all their stores fit in it.
    this.directory.cacheBytesPerStore = Math.floor(config.STATE_CACHE_BYTES / (2 * partitions));
    const options = {
      partitions,
      windowMs: config.TXN_WINDOW_MS,
      deadLetterTopic: config.KAFKA_TOPIC_DEAD_LETTERS,
      replyTopicPrefix: config.KAFKA_REPLY_TOPIC_PREFIX,
      budget: this.budget,
      heldPerSender: config.STATE_MAX_HELD_ANNOTATIONS_PER_SENDER,
      directory: this.directory,
      sendReply: this.replies.send,
    };
    // A failed start (one stage up, the other not) must not leave the first consuming while the retry builds anew.
    try {
      this.sends = this.processor(
        'send',
        config.KAFKA_CONSUMER_GROUP,
        config.KAFKA_TOPIC_COMMANDS,
        this.sendStage.changelogTopic,
        new StageHandler(this.sendStage, {
          ...options,
          group: config.KAFKA_CONSUMER_GROUP,
          observe: countsFor('send'),
        }),
      );
      this.annotations = this.processor(
        'annotation',
        `${config.KAFKA_CONSUMER_GROUP}.annotations`,
        config.KAFKA_TOPIC_ANNOTATIONS,
        this.annotationStage.changelogTopic,
        new StageHandler(this.annotationStage, {
          ...options,
          group: `${config.KAFKA_CONSUMER_GROUP}.annotations`,
          observe: countsFor('annotation'),
        }),
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
    this.directory.stop();
    await this.replies.disconnect().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
  }

  /** Forgets what is past the window, SWEEP_CHUNK entries at a time with the event loop free in between. */
  private async sweep(): Promise<void> {
    const states = [...((await this.sends?.states()) ?? []), ...((await this.annotations?.states()) ?? [])];
    let forgotten = 0;
    for (const state of states) {
      // A partition released meanwhile has its store closed (it sweeps nothing); a disk error must not end the process.
      for (let deleted = SWEEP_CHUNK; deleted === SWEEP_CHUNK && !this.stopped; forgotten += deleted) {
        try {
          deleted = state.sweep(SWEEP_CHUNK);
        } catch (error) {
          this.logger.warn(`the sweep of a state store failed: ${String(error)}`);
          break;
        }
        await new Promise(setImmediate);
      }
    }
    if (forgotten > 0) this.logger.debug(`forgot ${forgotten} transactions older than the window`);
  }
}
