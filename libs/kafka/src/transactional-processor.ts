import { Logger } from '@nestjs/common';
import { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { setTimeout as sleep } from 'node:timers/promises';
import { groupMetadataOfJoin } from './kafkajs-fixes/group-fencing';
import type { PartitionHandler, ProcessorObserver } from './processor-api';
import { StreamsProducer } from './streams-producer';
import { ConsumerRewind, StreamTask, TaskContext } from './stream-task';
import { TaskManager } from './task-manager';
import { ConsumerRevival } from './retry';

export type { BatchResult, InputBatch, PartitionHandler, ProcessorObserver } from './processor-api';

export interface TransactionalProcessorOptions {
  /** For logs. */
  name: string;
  groupId: string;
  inputTopic: string;
  /** Where the handler writes its state changes, partition for partition with the input topic. */
  changelogTopic: string;
  partitionsConcurrently: number;
  sessionTimeoutMs: number;
  fetchMinBytes: number;
  fetchMaxWaitMs: number;
  /** Bound on one produce request of a transaction: a batch's output goes out in as many requests as it needs. */
  maxRequestBytes: number;
  /**
   * How long a transaction may stay open before the coordinator aborts it (transaction.timeout.ms): how long the
   * partitions of a process that died mid-transaction stay blocked for their new owner.
   */
  transactionTimeoutMs: number;
  /** Told about every batch, restore and lag reading, for metrics. */
  observer?: ProcessorObserver;
  /**
   * Called once when this processor cannot go on by itself (its consumer crashed for good, or taking a partition
   * over kept failing): the process should exit so that its supervisor starts a new one.
   */
  onFatal: (error: Error) => void;
}

/**
 * Exactly-once read-process-write over one input topic, as Kafka Streams' exactly-once v2 (KIP-447): the batches of
 * every partition this process owns commit together, one Kafka transaction per round, through transactional producers
 * of this process (not of a partition), with the input offsets committed under the consumer's group generation and
 * member id. Each partition's state is restored from the same partition of a changelog topic; nothing reaches the
 * handler's afterCommit unless its transaction committed.
 *
 * The roles, as in Kafka Streams: the consumer and its group membership here; which partitions this process owns,
 * and their take-over, in TaskManager (which also says why a take-over stays exact); one partition's processing in
 * StreamTask; the transactions, one per round of batches, in StreamsProducer (rounds: CommitPipeline); the changelog
 * reader in changelog-restore.ts. kafkajs internals are reached only through kafkajs-fixes/.
 */
export class TransactionalProcessor<S> {
  private readonly logger: Logger;
  private readonly consumer: Consumer;
  private readonly tasks: TaskManager<S>;
  private readonly producer: StreamsProducer;
  private readonly rewind: ConsumerRewind;
  private joined = false;
  private failed = false;
  private stopped = false;
  private lastHeartbeat = -Infinity; // performance.now() of the last heartbeat
  private readonly revival: ConsumerRevival;

  constructor(
    kafka: Kafka,
    private readonly options: TransactionalProcessorOptions,
    handler: PartitionHandler<S>,
  ) {
    this.logger = new Logger(options.name);
    this.consumer = kafka.consumer({
      groupId: options.groupId,
      readUncommitted: false,
      minBytes: options.fetchMinBytes,
      maxWaitTimeInMs: options.fetchMaxWaitMs,
      sessionTimeout: options.sessionTimeoutMs,
      heartbeatInterval: Math.floor(options.sessionTimeoutMs / 5),
      retry: { retries: 10 },
    });
    this.producer = new StreamsProducer(kafka, options);
    this.rewind = new ConsumerRewind(this.consumer, this.logger);
    const context: TaskContext<S> = {
      logger: this.logger,
      handler,
      changelogTopic: options.changelogTopic,
      observer: options.observer,
      producer: this.producer,
      rewind: this.rewind,
      membership: () => this.tasks.membership,
      stopped: () => this.stopped,
      release: (partition: number) => void this.tasks.release([partition]),
    };
    this.tasks = new TaskManager(
      kafka,
      options,
      handler,
      this.producer,
      (state: S) => new StreamTask(state, context),
      this.logger,
      (error) => this.fail(error),
    );
    this.revival = new ConsumerRevival(
      this.logger,
      () => this.start(),
      (error) => this.fail(new Error(`consumer stopped for good: ${error.message}`)),
    );
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => {
      this.lastHeartbeat = performance.now();
      this.revival.joined();
      const membership = groupMetadataOfJoin(payload);
      this.rewind.clear(); // a new assignment reads from the committed offsets
      this.tasks.onAssignment(membership, payload.memberAssignment);
      this.joined = true;
    });
    this.consumer.on(this.consumer.events.HEARTBEAT, () => (this.lastHeartbeat = performance.now()));
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      this.joined = false;
      this.logger.error(`consumer crashed (${payload.error.message}); restart=${String(payload.restart)}`);
      // kafkajs restarts the consumer after a retriable error; after any other it stays stopped.
      if (!payload.restart && !this.stopped) this.revival.stopped(payload.error);
    });
  }

  private fail(error: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.options.onFatal(error);
  }

  /**
   * In the group, with the state of every assigned partition restored (a failed take-over is retried first), and
   * heard by the group within a session: a process that lost Kafka stops being ready once the group would have
   * given its partitions away, not only when kafkajs gives up reconnecting minutes later.
   */
  get isReady(): boolean {
    return this.joined && performance.now() - this.lastHeartbeat < this.options.sessionTimeoutMs && this.tasks.ready;
  }

  /** The states of the partitions owned right now (for gauges). */
  states(): Promise<S[]> {
    return this.tasks.states();
  }

  async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.options.inputTopic, fromBeginning: true });
    await this.consumer.run({
      autoCommit: false, // offsets commit inside each round's transaction
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.options.partitionsConcurrently,
      eachBatch: (payload) => this.processBatch(payload),
    });
  }

  /** Finishes the running batches (their transactions commit or abort), leaves the group, releases producers. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.revival.cancel();
    this.tasks.stop();
    // Batches decided meanwhile commit under this membership, before the group hears that this process leaves.
    await this.producer.drained();
    await this.consumer.disconnect().catch(() => undefined);
    await this.producer.drained();
    await this.tasks.releaseAll();
    await Promise.all([this.producer.close(), this.tasks.close()]);
  }

  /** Hands a fetched batch to its partition's task, taking the partition over first if needed. */
  private async processBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const heartbeat = (): Promise<void> => payload.heartbeat();
    if (batch.messages.length === 0 || this.stopped || !payload.isRunning() || payload.isStale()) return;
    // A batch fetched before a rebalance took the partition away: it is the new owner's.
    if (!this.tasks.isAssigned(batch.partition)) return;
    // A batch fetched before the consumer was sent back to read a partition again must not jump ahead of it.
    if (this.rewind.fetchedBefore(batch)) return;
    let owned: { task: StreamTask<S>; current: () => boolean };
    try {
      owned = await this.tasks.taskOf(batch.partition, heartbeat);
    } catch {
      await sleep(500); // not resolving the offsets makes kafkajs fetch this batch again
      return;
    }
    await owned.task.process(payload, owned.current, heartbeat);
  }
}
