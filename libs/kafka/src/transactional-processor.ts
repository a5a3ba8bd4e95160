import { Logger } from '@nestjs/common';
import {
  Consumer,
  EachBatchPayload,
  Kafka,
  KafkaMessage,
  Producer,
  RecordMetadata,
  TopicMessages,
  Transaction,
} from 'kafkajs';
import {
  Checkpoint,
  changelogCheckpoint,
  LocalState,
  restoreChangelog,
  RestoreStats,
  writeRestoreMarker,
} from './changelog-restore';
import { createProducer } from './kafka-client';
import { chunkByBytes } from './record-bytes';
import { ConsumerRevival } from './retry';

/** What a processor does with its partitions; the Kafka side (ownership, restore, transactions) is not its concern. */
export interface PartitionHandler<S> {
  /** Empty state for a partition that is about to be restored. */
  createState(partition: number): S;
  /** Applies one changelog record of the partition, in log order, while restoring. */
  restore(state: S, message: KafkaMessage): void;
  /** Decides a batch against the state: the records to commit atomically with the batch's offsets. */
  processBatch(state: S, batch: InputBatch): BatchResult;
  /** The partition's state is no longer this process's (released, or its take-over failed). */
  release?(state: S): void;
  /** The state's local store, if it keeps one between owners: the restore then replays from its checkpoint. */
  localState?(state: S): LocalState | undefined;
}

/** The records of one partition to process, in offset order. */
export interface InputBatch {
  topic: string;
  partition: number;
  messages: KafkaMessage[];
}

export interface BatchResult {
  records: TopicMessages[];
  /**
   * Runs once the transaction has committed: apply staged state, send replies. `checkpoint` is where the batch's
   * changelog records put the partition's store (undefined when it wrote none).
   */
  afterCommit(checkpoint?: Checkpoint): void;
  /** Runs instead when the transaction was aborted (the batch will be processed again). */
  aborted?(error: unknown): void;
}

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
  /** Told about every batch, restore and lag reading, for metrics. */
  observer?: ProcessorObserver;
  /**
   * Called once when this processor cannot go on by itself (its consumer crashed for good, or taking a partition
   * over kept failing): the process should exit so that its supervisor starts a new one.
   */
  onFatal: (error: Error) => void;
}

/** Take-overs of the same partitions that may fail in a row (broker trouble) before the processor gives up. */
const MAX_TAKEOVER_ATTEMPTS = 8;

export interface ProcessorObserver {
  /** A batch of `records` input records, in `seconds`; when committed, `written` records went out with it. */
  batch(records: number, seconds: number, committed: boolean, written: number): void;
  restored(stats: RestoreStats): void;
  lag(partition: number, records: number): void;
  /** Partitions this process no longer owns (revoked, or released to be taken over again). */
  released?(partitions: number[]): void;
}

interface Owned<S> {
  producer: Producer;
  state: S;
  /** The offset after the last batch this owner committed: a batch fetched again is not processed again. */
  next: bigint | null;
  /** The tail of this partition's batches: one at a time, each one's state applied before the next starts. */
  turn: Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Exactly-once read-process-write over one input topic. Each partition this process is assigned gets a
 * transactional producer whose id is tied to the partition, so initialising it fences the previous owner (how
 * kafkajs stops zombies), and state restored from the same partition of a changelog topic. Each batch's output
 * records and consumed offsets commit in one Kafka transaction; nothing reaches the handler's afterCommit unless
 * that transaction committed.
 */
export class TransactionalProcessor<S> {
  private readonly logger: Logger;
  private readonly consumer: Consumer;
  private readonly owned = new Map<number, Promise<Owned<S>>>();
  /** The partitions the group gave this process at the last join. */
  private assigned = new Set<number>();
  private joined = false;
  private restoring = 0;
  private failed = false;
  private stopped = false;
  private lastHeartbeat = -Infinity; // performance.now() of the last heartbeat
  /** Consecutive failed take-overs per partition, for the back-off and the give-up. */
  private readonly takeOverFailures = new Map<number, number>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly revival: ConsumerRevival;

  constructor(
    private readonly kafka: Kafka,
    private readonly options: TransactionalProcessorOptions,
    private readonly handler: PartitionHandler<S>,
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
    this.revival = new ConsumerRevival(
      this.logger,
      () => this.start(),
      (error) => this.fail(new Error(`consumer stopped for good: ${error.message}`)),
    );
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => {
      this.lastHeartbeat = performance.now();
      this.revival.joined();
      this.onAssignment(payload.memberAssignment);
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
    return (
      this.joined &&
      performance.now() - this.lastHeartbeat < this.options.sessionTimeoutMs &&
      this.restoring === 0 &&
      [...this.assigned].every((partition) => this.owned.has(partition))
    );
  }

  /** The states of the partitions owned right now (for gauges). */
  async states(): Promise<S[]> {
    const settled = await Promise.allSettled(this.owned.values());
    return settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value.state] : []));
  }

  async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.options.inputTopic, fromBeginning: true });
    await this.consumer.run({
      autoCommit: false, // offsets commit inside each batch's transaction
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.options.partitionsConcurrently,
      eachBatch: (payload) => this.processBatch(payload),
    });
  }

  /** Finishes the running batches (their transactions commit or abort), leaves the group, releases producers. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.revival.cancel();
    this.retryTimers.forEach((timer) => clearTimeout(timer));
    await this.consumer.disconnect().catch(() => undefined);
    await this.release([...this.owned.keys()]);
  }

  private onAssignment(assignment: Record<string, number[]>): void {
    const assigned = new Set(assignment[this.options.inputTopic] ?? []);
    this.assigned = assigned;
    void this.release([...this.owned.keys()].filter((partition) => !assigned.has(partition)));
    this.joined = true;
    const added = [...assigned].filter((partition) => !this.owned.has(partition));
    if (added.length > 0) this.acquire(added, async () => undefined);
    this.logger.log(`assigned partitions [${[...assigned].sort((a, b) => a - b).join(', ')}]`);
  }

  /** Takes over partitions: fence their previous owners, then restore each one's state up to a fresh marker. */
  private acquire(partitions: number[], keepAlive: () => Promise<void>): void {
    this.restoring++;
    const acquired = this.takeOver(partitions, keepAlive).finally(() => this.restoring--);
    const entries = partitions.map((partition, i) => {
      const entry = acquired.then(({ owned }) => owned[i]);
      // A partition with no batch waiting must not turn a failure into an unhandled rejection.
      entry.catch(() => undefined);
      this.owned.set(partition, entry);
      return entry;
    });
    acquired.then(
      ({ stats }) => {
        partitions.forEach((partition) => this.takeOverFailures.delete(partition));
        this.options.observer?.restored(stats);
        this.logger.log(
          `restored partitions [${partitions.join(', ')}]: ${stats.records} records in ${stats.millis} ms`,
        );
      },
      (error: unknown) => {
        this.logger.error(`taking over partitions [${partitions.join(', ')}] failed: ${String(error)}`);
        // Only this attempt's entries: a newer take-over of the same partition may already have replaced them.
        partitions.forEach((partition, i) => {
          if (this.owned.get(partition) === entries[i]) this.owned.delete(partition);
        });
        this.retryTakeOver(partitions, error);
      },
    );
  }

  /**
   * Tries again, with back-off, the partitions that are still assigned and not owned meanwhile, so that the process
   * becomes ready without waiting for a batch; gives up (fatal) after MAX_TAKEOVER_ATTEMPTS failures in a row.
   */
  private retryTakeOver(partitions: number[], error: unknown): void {
    const attempts = Math.max(...partitions.map((partition) => (this.takeOverFailures.get(partition) ?? 0) + 1));
    partitions.forEach((partition) => this.takeOverFailures.set(partition, attempts));
    if (attempts >= MAX_TAKEOVER_ATTEMPTS) {
      this.fail(
        new Error(
          `taking over partitions [${partitions.join(', ')}] failed ${attempts} times in a row, last: ${String(error)}`,
        ),
      );
      return;
    }
    const timer = setTimeout(
      () => {
        this.retryTimers.delete(timer);
        const again = partitions.filter((partition) => this.assigned.has(partition) && !this.owned.has(partition));
        if (!this.stopped && again.length > 0) this.acquire(again, async () => undefined);
      },
      Math.min(10_000, 250 * 2 ** attempts),
    );
    this.retryTimers.add(timer);
  }

  private async takeOver(
    partitions: number[],
    keepAlive: () => Promise<void>,
  ): Promise<{ owned: Owned<S>[]; stats: RestoreStats }> {
    const connecting = await Promise.allSettled(
      partitions.map(async (partition) => {
        const producer = createProducer(this.kafka, {
          transactionalId: `${this.options.groupId}.${this.options.inputTopic}.${partition}`,
          idempotent: true,
          maxInFlightRequests: 1,
          transactionTimeout: 30000,
          // Right after a commit the coordinator answers CONCURRENT_TRANSACTIONS until its markers are written;
          // the Java client retries that after 20 ms, kafkajs' default first retry (100 ms+) is what stalls.
          retry: { initialRetryTime: 20, maxRetryTime: 1000, retries: 10 },
        });
        try {
          await producer.connect(); // initialises the transactional id: the previous owner is fenced from here on
        } catch (error) {
          await producer.disconnect().catch(() => undefined);
          throw error;
        }
        return producer;
      }),
    );
    const producers = connecting.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const states: S[] = [];
    try {
      const failed = connecting.find((result) => result.status === 'rejected');
      if (failed) throw failed.reason;
      for (const partition of partitions) states.push(this.handler.createState(partition));
      const owned = partitions.map((_partition, i): Owned<S> => ({
        producer: producers[i],
        state: states[i],
        next: null,
        turn: Promise.resolve(),
      }));
      const markers = new Map(
        await Promise.all(
          partitions.map(
            async (partition, i) =>
              [partition, await writeRestoreMarker(producers[i], this.options.changelogTopic, partition)] as const,
          ),
        ),
      );
      const stats = await restoreChangelog(
        this.kafka,
        this.options.changelogTopic,
        partitions.map((partition, i) => ({
          partition,
          apply: (message) => this.handler.restore(owned[i].state, message),
          local: this.handler.localState?.(owned[i].state),
        })),
        markers,
        keepAlive,
      );
      // The offsets kafkajs fetched when the group formed may predate the previous owner's last commit, whose
      // markers are only certain to be written now that its transactional id is fenced: start from the
      // committed offsets as they are now, so a batch the previous owner committed is never processed again.
      const committed = await this.committedOffsets();
      owned.forEach((o, i) => (o.next = committed.get(partitions[i]) ?? null));
      return { owned, stats };
    } catch (error) {
      states.forEach((state) => this.handler.release?.(state));
      await Promise.all(producers.map((producer) => producer.disconnect().catch(() => undefined)));
      throw error;
    }
  }

  private async committedOffsets(): Promise<Map<number, bigint>> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const [topic] = await admin.fetchOffsets({ groupId: this.options.groupId, topics: [this.options.inputTopic] });
      return new Map(topic.partitions.filter((p) => Number(p.offset) >= 0).map((p) => [p.partition, BigInt(p.offset)]));
    } finally {
      await admin.disconnect();
    }
  }

  private async release(partitions: number[]): Promise<void> {
    const owned = partitions.flatMap((partition) => this.owned.get(partition) ?? []);
    partitions.forEach((partition) => this.owned.delete(partition));
    this.options.observer?.released?.(partitions);
    await Promise.all(
      owned.map((o) =>
        o
          .then(
            ({ producer, state }) => {
              this.handler.release?.(state);
              return producer.disconnect();
            },
            () => undefined,
          )
          .catch(() => undefined),
      ),
    );
  }

  private async ownerOf(partition: number, heartbeat: () => Promise<void>): Promise<Owned<S>> {
    if (!this.owned.has(partition)) this.acquire([partition], heartbeat);
    // Restoring can take a while: keep the group membership alive meanwhile.
    const beat = setInterval(() => void heartbeat().catch(() => undefined), 1000);
    try {
      return await this.owned.get(partition)!;
    } finally {
      clearInterval(beat);
    }
  }

  private async processBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const heartbeat = (): Promise<void> => payload.heartbeat();
    if (batch.messages.length === 0 || !payload.isRunning() || payload.isStale()) return;
    // A batch fetched before a rebalance took the partition away: taking it over again would fence the new owner.
    if (!this.assigned.has(batch.partition)) return;
    let owner: Owned<S>;
    try {
      owner = await this.ownerOf(batch.partition, heartbeat);
    } catch {
      await sleep(500); // not resolving the offsets makes kafkajs fetch this batch again
      return;
    }
    // kafkajs may hand out a partition's records again while a batch of it is still committing (it re-reads the
    // committed offset on a rebalance). Batches of one partition therefore run strictly one after another, and
    // records this owner already committed are skipped.
    const turn = owner.turn.then(() => this.processInTurn(owner, payload, heartbeat));
    owner.turn = turn.catch(() => undefined);
    await turn;
  }

  private async processInTurn(
    owner: Owned<S>,
    payload: EachBatchPayload,
    heartbeat: () => Promise<void>,
  ): Promise<void> {
    const { batch } = payload;
    if (this.owned.get(batch.partition) === undefined) return; // released meanwhile: the next owner takes over
    const fresh =
      owner.next === null ? batch.messages : batch.messages.filter((message) => BigInt(message.offset) >= owner.next!);
    if (fresh.length === 0) {
      payload.resolveOffset(batch.lastOffset());
      return;
    }
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    this.options.observer?.lag(batch.partition, Number(batch.offsetLag()));
    const result = this.handler.processBatch(owner.state, {
      topic: batch.topic,
      partition: batch.partition,
      messages: fresh,
    });
    const requests = chunkByBytes(result.records, this.options.maxRequestBytes);
    const next = BigInt(batch.lastOffset()) + 1n;
    let tx: Transaction | undefined;
    const sent: RecordMetadata[][] = [];
    try {
      tx = await owner.producer.transaction();
      for (const topicMessages of requests) sent.push(await tx.sendBatch({ acks: -1, topicMessages }));
      await tx.sendOffsets({
        consumerGroupId: this.options.groupId,
        topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next.toString() }] }],
      });
      await tx.commit();
    } catch (error) {
      await tx?.abort().catch(() => undefined);
      result.aborted?.(error);
      this.options.observer?.batch(fresh.length, seconds(), false, 0);
      this.logger.warn(
        `batch ${batch.topic}/${batch.partition}@${batch.firstOffset()} not committed (${String(error)}); it will be retried`,
      );
      // A failed or fenced transaction leaves this process unsure of what committed: take the partition over
      // again, which restores the state from what did.
      await this.release([batch.partition]);
      await sleep(200);
      await heartbeat().catch(() => undefined);
      return;
    }
    owner.next = next;
    const written = result.records.reduce((sum, { messages }) => sum + messages.length, 0);
    this.options.observer?.batch(fresh.length, seconds(), true, written);
    try {
      result.afterCommit(changelogCheckpoint(requests, sent, this.options.changelogTopic, batch.partition));
    } catch (error) {
      // The state store could not take a committed batch: take the partition over again, which replays it.
      this.logger.error(`the state of ${batch.topic}/${batch.partition} missed a committed batch: ${String(error)}`);
      await this.release([batch.partition]);
    }
    payload.resolveOffset(batch.lastOffset());
  }
}
