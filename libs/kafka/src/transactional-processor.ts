import { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
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
  writeRestoreMarkers,
} from './changelog-restore';
import { CommitEntry, CommitPipeline, Round, roundOffsets } from './commit-pipeline';
import { createProducer } from './kafka-client';
import {
  ConsumerGroupMetadata,
  fetchStableOffsets,
  groupMetadataOfJoin,
  sendOffsetsToTransaction,
} from './kafkajs-fixes/group-fencing';
import { fetchedOffsetOf } from './kafkajs-fixes/fetched-offset';
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
  /**
   * True when processBatch may be called again for a partition before the previous batch's transaction has
   * committed: the handler then decides on top of the uncommitted batches' changes, and each batch ends in exactly
   * one afterCommit or aborted, in the order the batches were decided. A batch aborted makes every later batch of
   * its partition abort too. Otherwise a partition's next batch is decided once the previous one committed.
   */
  readonly decidesOnUncommitted?: boolean;
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

/** Take-overs of the same partitions that may fail in a row (broker trouble) before the processor gives up. */
const MAX_TAKEOVER_ATTEMPTS = 8;

export interface ProcessorObserver {
  /** A batch of `records` input records, in `seconds`; when committed, `written` records went out with it. */
  batch(records: number, seconds: number, committed: boolean, written: number): void;
  /** A Kafka transaction (a round: the batches of several partitions) ended, committed or not. */
  transaction?(committed: boolean): void;
  restored(stats: RestoreStats): void;
  lag(partition: number, records: number): void;
  /** Partitions this process no longer owns (revoked, or released to be taken over again). */
  released?(partitions: number[]): void;
}

/**
 * What a committed round wrote: its produce requests and each one's answer (`written[i]` answers `requests[i]`),
 * from which each batch of the round finds its own changelog partition's checkpoint.
 */
interface RoundWritten {
  requests: TopicMessages[][];
  written: RecordMetadata[][];
  /** The batches the transaction held: a batch whose partition was released before its round began is left out. */
  included: Set<CommitEntry>;
}

/** A partition this process owns: its state, and where its processing stands. */
interface Owned<S> {
  state: S;
  /** The offset after the last batch this owner decided: a batch fetched again is not processed again. */
  next: bigint | null;
  /**
   * The offset after the last batch of this owner that committed (or where the owner started): where the consumer
   * reads again from when a batch after it is not committed.
   */
  committed: bigint | null;
  /** The tail of this partition's batches: decided one at a time, in offset order. */
  turn: Promise<void>;
  /** Batches decided and not yet settled (committed or not); each settles without throwing. */
  uncommitted: Set<Promise<void>>;
}

/**
 * Batches of one partition decided and not yet committed, at most, in a handler that decides on uncommitted batches:
 * one committing, one waiting for the next round. Bounds what a partition holds in memory (a fetch each).
 */
const UNCOMMITTED_BATCHES = 2;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Transactional producers used in turn, one transaction each: the next round's first request does not wait for the
 * coordinator to finish writing the previous round's markers (it answers CONCURRENT_TRANSACTIONS until then).
 */
const TRANSACTIONAL_PRODUCERS = 2;

/** A transactional producer, connected on first use, and connected again (same id) after a failure. */
class ProducerSlot {
  private producer?: Promise<Producer>;

  constructor(private readonly create: () => Producer) {}

  get(): Promise<Producer> {
    if (!this.producer) {
      const producer = this.create();
      // Connecting initialises the transactional id: any transaction an earlier producer of it left open aborts.
      const connected = producer.connect().then(
        () => producer,
        async (error: unknown) => {
          await producer.disconnect().catch(() => undefined);
          throw error;
        },
      );
      connected.catch(() => this.producer === connected && (this.producer = undefined));
      this.producer = connected;
    }
    return this.producer;
  }

  async replace(): Promise<void> {
    const old = this.producer;
    this.producer = undefined;
    await old?.then((producer) => producer.disconnect()).catch(() => undefined);
  }
}

/**
 * Exactly-once read-process-write over one input topic, as Kafka Streams' exactly-once v2 (KIP-447): the batches of
 * every partition this process owns commit together, one Kafka transaction per round (see CommitPipeline), through
 * transactional producers of this process (not of a partition), with the input offsets committed under the
 * consumer's group generation and member id. Each partition's state is restored from the same partition of a
 * changelog topic; nothing reaches the handler's afterCommit unless its transaction committed.
 *
 * Why a take-over stays exact without a producer per partition to fence: a previous owner (a zombie) can only commit
 * a transaction whose offsets the group coordinator accepted, which it does only while the zombie's generation is
 * the group's: before the new owner was even assigned the partition. The zombie sends its offsets after every record
 * of that transaction was written, so those records precede the marker the new owner writes into the changelog, and
 * the new owner's read_committed restore cannot pass them before the transaction has ended (committed: restored;
 * aborted: skipped). Its committed offsets are then read with require_stable, which waits for such a transaction
 * too. Any later transaction of the zombie is refused at its offsets and aborted (or, frozen, aborted by the
 * coordinator after transactionTimeoutMs), so it never appends, replies, or moves offsets.
 */
export class TransactionalProcessor<S> {
  private readonly logger: Logger;
  private readonly consumer: Consumer;
  private readonly owned = new Map<number, Promise<Owned<S>>>();
  /** The partitions the group gave this process at the last join, and the membership they were given under. */
  private assigned = new Set<number>();
  private membership?: ConsumerGroupMetadata;
  private joined = false;
  private restoring = 0;
  private failed = false;
  private stopped = false;
  private lastHeartbeat = -Infinity; // performance.now() of the last heartbeat
  /** Consecutive failed take-overs per partition, for the back-off and the give-up. */
  private readonly takeOverFailures = new Map<number, number>();
  /** Partitions the consumer was sent back to read again from an offset (see notCommitted), until it does. */
  private readonly resumeAt = new Map<number, bigint>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly revival: ConsumerRevival;
  private readonly producers: ProducerSlot[];
  /** Writes the restore markers (idempotent, not transactional). */
  private readonly markers: ProducerSlot;
  private readonly pipeline = new CommitPipeline<RoundWritten>(
    (round, slot) => this.commitRound(round, slot),
    TRANSACTIONAL_PRODUCERS,
    1, // one round at a time: rounds committing side by side measured slower on three brokers (README, Performance)
  );

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
    // One id per process and producer: a process that starts again is a new writer, as in Kafka Streams.
    const instance = randomUUID();
    this.producers = Array.from(
      { length: TRANSACTIONAL_PRODUCERS },
      (_, i) =>
        new ProducerSlot(() =>
          createProducer(kafka, {
            transactionalId: `${options.groupId}.${instance}.${i}`,
            idempotent: true,
            maxInFlightRequests: 1,
            transactionTimeout: options.transactionTimeoutMs,
            // The Java client retries CONCURRENT_TRANSACTIONS after 20 ms; kafkajs' first retry (100 ms+) stalls.
            retry: { initialRetryTime: 20, maxRetryTime: 1000, retries: 10 },
          }),
        ),
    );
    this.markers = new ProducerSlot(() => createProducer(kafka, { idempotent: true, maxInFlightRequests: 1 }));
    this.revival = new ConsumerRevival(
      this.logger,
      () => this.start(),
      (error) => this.fail(new Error(`consumer stopped for good: ${error.message}`)),
    );
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => {
      this.lastHeartbeat = performance.now();
      this.revival.joined();
      this.onAssignment(groupMetadataOfJoin(payload), payload.memberAssignment);
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
    this.retryTimers.forEach((timer) => clearTimeout(timer));
    // Batches decided meanwhile commit under this membership, before the group hears that this process leaves.
    await this.pipeline.drained();
    await this.consumer.disconnect().catch(() => undefined);
    await this.pipeline.drained();
    await this.release([...this.owned.keys()]);
    await Promise.all([...this.producers, this.markers].map((slot) => slot.replace()));
  }

  /**
   * A partition's state stays valid across a join only if nobody else can have owned it in between: the same member,
   * the very next generation. Otherwise (this member was dropped and joined again, or missed a generation) every
   * partition is taken over again, from what its owners committed.
   */
  private onAssignment(membership: ConsumerGroupMetadata, assignment: Record<string, number[]>): void {
    const previous = this.membership;
    const continuous =
      previous !== undefined &&
      previous.memberId === membership.memberId &&
      previous.generationId + 1 === membership.generationId;
    this.membership = membership;
    this.resumeAt.clear(); // a new assignment reads from the committed offsets
    const assigned = new Set(assignment[this.options.inputTopic] ?? []);
    this.assigned = assigned;
    void this.release([...this.owned.keys()].filter((partition) => !continuous || !assigned.has(partition)));
    this.joined = true;
    const added = [...assigned].filter((partition) => !this.owned.has(partition));
    if (added.length > 0) this.acquire(added, async () => undefined);
    this.logger.log(
      `assigned partitions [${[...assigned].sort((a, b) => a - b).join(', ')}] in generation ${membership.generationId}`,
    );
  }

  /** Takes over partitions: restore each one's state up to a fresh marker, then read where its owners stopped. */
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
    const states: S[] = [];
    try {
      for (const partition of partitions) states.push(this.handler.createState(partition));
      const owned = partitions.map((_partition, i): Owned<S> => ({
        state: states[i],
        next: null,
        committed: null,
        turn: Promise.resolve(),
        uncommitted: new Set(),
      }));
      // The transactional producers too: a process is ready only once its first round can begin at once.
      const [markerWriter] = await Promise.all([this.markers.get(), ...this.producers.map((slot) => slot.get())]);
      const markers = await writeRestoreMarkers(markerWriter, this.options.changelogTopic, partitions);
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
      // The offsets kafkajs fetched when the group formed may predate a commit that was pending then: start from the
      // stable committed offsets, so a batch a previous owner committed is never processed again.
      const committed = await this.committedOffsets();
      owned.forEach((o, i) => (o.next = o.committed = committed.get(partitions[i]) ?? null));
      return { owned, stats };
    } catch (error) {
      states.forEach((state) => this.handler.release?.(state));
      throw error;
    }
  }

  private async committedOffsets(): Promise<Map<number, bigint>> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      // A transaction of a previous owner holds its offsets at most transactionTimeoutMs, plus the coordinator's
      // scan for timed-out transactions (10 s by default).
      const wait = this.options.transactionTimeoutMs + 15_000;
      return await fetchStableOffsets(admin, this.options.groupId, this.options.inputTopic, wait);
    } finally {
      await admin.disconnect();
    }
  }

  private async release(partitions: number[]): Promise<void> {
    const owned = partitions.flatMap((partition) => this.owned.get(partition) ?? []);
    partitions.forEach((partition) => this.owned.delete(partition));
    if (partitions.length > 0) this.options.observer?.released?.(partitions);
    await Promise.all(
      owned.map((o) =>
        o.then(
          ({ state }) => this.handler.release?.(state),
          () => undefined,
        ),
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
    if (batch.messages.length === 0 || this.stopped || !payload.isRunning() || payload.isStale()) return;
    // A batch fetched before a rebalance took the partition away: it is the new owner's.
    if (!this.assigned.has(batch.partition)) return;
    // A batch fetched before the consumer was sent back to read a partition again must not jump ahead of it.
    const resumeAt = this.resumeAt.get(batch.partition);
    if (resumeAt !== undefined) {
      if (fetchedOffsetOf(batch) > resumeAt) return;
      this.resumeAt.delete(batch.partition);
    }
    let entry: Promise<Owned<S>> | undefined;
    let owner: Owned<S>;
    try {
      owner = await this.ownerOf(batch.partition, heartbeat);
      entry = this.owned.get(batch.partition);
    } catch {
      await sleep(500); // not resolving the offsets makes kafkajs fetch this batch again
      return;
    }
    // kafkajs may hand out a partition's records again while a batch of it is still committing (it re-reads the
    // committed offset on a rebalance). Batches of one partition therefore run strictly one after another, and
    // records this owner already committed are skipped.
    const turn = owner.turn.then(() => this.processInTurn(owner, entry, payload, heartbeat));
    owner.turn = turn.catch(() => undefined);
    await turn;
  }

  private async processInTurn(
    owner: Owned<S>,
    entry: Promise<Owned<S>> | undefined,
    payload: EachBatchPayload,
    heartbeat: () => Promise<void>,
  ): Promise<void> {
    const { batch } = payload;
    const pipelined = this.handler.decidesOnUncommitted === true;
    const current = (): boolean => entry !== undefined && this.owned.get(batch.partition) === entry;
    while (pipelined && owner.uncommitted.size >= UNCOMMITTED_BATCHES) await Promise.race(owner.uncommitted);
    // Released meanwhile (revoked, or its state is no longer trusted): the next owner takes over.
    const membership = this.membership;
    if (!current() || !membership || this.stopped) return;
    const fresh =
      owner.next === null ? batch.messages : batch.messages.filter((message) => BigInt(message.offset) >= owner.next!);
    if (fresh.length === 0) {
      payload.resolveOffset(batch.lastOffset());
      return;
    }
    owner.committed ??= BigInt(fresh[0].offset); // nothing committed before: this owner reads from the log's start
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    this.options.observer?.lag(batch.partition, Number(batch.offsetLag()));
    const result = this.handler.processBatch(owner.state, {
      topic: batch.topic,
      partition: batch.partition,
      messages: fresh,
    });
    const next = BigInt(batch.lastOffset()) + 1n;
    owner.next = next;
    const commitEntry: CommitEntry = {
      topic: batch.topic,
      partition: batch.partition,
      records: result.records,
      offset: next,
      current,
    };
    // Decided under this membership: its transaction commits under it, or not at all.
    const settled = this.pipeline.add(membership, commitEntry).then(
      (round) => {
        const outcome = { records: fresh.length, seconds: seconds() };
        if (round.included.has(commitEntry)) return this.committed(owner, entry, commitEntry, result, round, outcome);
        this.notCommitted(owner, entry, batch, result, new Error('its partition was released first'), outcome);
        return false;
      },
      (error: unknown) => {
        this.notCommitted(owner, entry, batch, result, error, { records: fresh.length, seconds: seconds() });
        return false;
      },
    );
    const tracked = settled.then(() => undefined);
    owner.uncommitted.add(tracked);
    void tracked.finally(() => owner.uncommitted.delete(tracked));
    if (pipelined) {
      // The consumer fetches on while the batch commits; a batch that does not commit makes it read again.
      payload.resolveOffset(batch.lastOffset());
      return;
    }
    if (await settled) {
      payload.resolveOffset(batch.lastOffset());
    } else {
      await sleep(200);
      await heartbeat().catch(() => undefined);
    }
  }

  /** The batch's transaction committed: apply its state, send its replies. Returns true. */
  private committed(
    owner: Owned<S>,
    entry: Promise<Owned<S>> | undefined,
    batch: CommitEntry,
    result: BatchResult,
    round: RoundWritten,
    { records, seconds }: { records: number; seconds: number },
  ): boolean {
    owner.committed = batch.offset;
    const written = result.records.reduce((sum, { messages }) => sum + messages.length, 0);
    this.options.observer?.batch(records, seconds, true, written);
    // The round's requests carry the changelog records of every partition in it: the checkpoint is where the records
    // of the batch's own changelog partition went, which only the responses to those requests tell. It may lie past
    // this batch's records when a later batch of the partition shares the round: only that last batch moves it.
    const last = [...round.included].filter(({ partition }) => partition === batch.partition).at(-1) === batch;
    try {
      result.afterCommit(
        last
          ? changelogCheckpoint(round.requests, round.written, this.options.changelogTopic, batch.partition)
          : undefined,
      );
    } catch (error) {
      // The state store could not take a committed batch: take the partition over again, which replays it.
      this.logger.error(`the state of ${batch.topic}/${batch.partition} missed a committed batch: ${String(error)}`);
      if (this.owned.get(batch.partition) === entry) void this.release([batch.partition]);
    }
    return true;
  }

  /**
   * The batch's transaction did not commit (or it was left out of it). This process is unsure of what committed:
   * the partition is taken over again, which restores its state from what did, and the consumer reads again from
   * after the last batch known to have committed (the new owner skips whatever did commit beyond it).
   */
  private notCommitted(
    owner: Owned<S>,
    entry: Promise<Owned<S>> | undefined,
    batch: EachBatchPayload['batch'],
    result: BatchResult,
    error: unknown,
    { records, seconds }: { records: number; seconds: number },
  ): void {
    result.aborted?.(error);
    this.options.observer?.batch(records, seconds, false, 0);
    if (entry === undefined || this.owned.get(batch.partition) !== entry) return; // already released
    this.logger.warn(
      `batch ${batch.topic}/${batch.partition}@${batch.firstOffset()} not committed (${String(error)}); it will be retried`,
    );
    if (owner.committed !== null && this.handler.decidesOnUncommitted) {
      this.resumeAt.set(batch.partition, owner.committed);
      try {
        this.consumer.seek({ topic: batch.topic, partition: batch.partition, offset: owner.committed.toString() });
      } catch (seekError) {
        this.logger.warn(`could not read ${batch.topic}/${batch.partition} again: ${String(seekError)}`);
      }
    }
    void this.release([batch.partition]);
  }

  /**
   * The record collector: one transaction for the round's records (in produce requests of at most maxRequestBytes)
   * and its input offsets, on the producers in turn. A producer whose transaction could not even be aborted is
   * replaced: its successor's initialisation aborts what it left open.
   */
  private async commitRound(round: Round, producerIndex: number): Promise<RoundWritten> {
    // A batch whose partition was released since it was decided (a batch before it did not commit, or the group
    // took the partition away) must not commit: it may rest on state that never committed.
    const entries = round.entries.filter((entry) => entry.current?.() !== false);
    const included = new Set(entries);
    if (entries.length === 0) return { requests: [], written: [], included };
    const slot = this.producers[producerIndex];
    const producer = await slot.get();
    const records: TopicMessages[] = entries.flatMap(({ records }) => records);
    const requests = chunkByBytes(records, this.options.maxRequestBytes);
    const written: RecordMetadata[][] = [];
    let tx: Transaction | undefined;
    try {
      tx = await producer.transaction();
      for (const topicMessages of requests) written.push(await tx.sendBatch({ acks: -1, topicMessages }));
      await sendOffsetsToTransaction(tx, this.options.groupId, roundOffsets(entries), round.metadata);
      await tx.commit();
      this.options.observer?.transaction?.(true);
      return { requests, written, included };
    } catch (error) {
      this.options.observer?.transaction?.(false);
      const aborted = tx
        ? await tx.abort().then(
            () => true,
            () => false,
          )
        : true;
      if (!aborted) await slot.replace();
      throw error;
    }
  }
}
