import { Logger } from '@nestjs/common';
import { Kafka } from 'kafkajs';
import { restoreChangelog, RestoreStats, writeRestoreMarkers } from './changelog-restore';
import { createProducer } from './kafka-client';
import { ConsumerGroupMetadata, fetchStableOffsets } from './kafkajs-fixes/group-fencing';
import type { PartitionHandler, ProcessorObserver } from './processor-api';
import { ProducerSlot, StreamsProducer } from './streams-producer';
import { StreamTask } from './stream-task';

/** Take-overs of the same partitions that may fail in a row (broker trouble) before the processor gives up. */
const MAX_TAKEOVER_ATTEMPTS = 8;

export interface TaskManagerOptions {
  groupId: string;
  inputTopic: string;
  /** Where each partition's state is restored from, partition for partition with the input topic. */
  changelogTopic: string;
  /** How long a previous owner's transaction may hold the committed offsets (transaction.timeout.ms). */
  transactionTimeoutMs: number;
  observer?: ProcessorObserver;
}

/**
 * Which input partitions this process owns (Kafka Streams' TaskManager): the group's assignment, and for each of its
 * partitions a StreamTask, taken over by restoring the partition's state from its changelog up to a fresh marker and
 * reading the group's stable committed offsets. A failed take-over is retried with back-off, then given up.
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
export class TaskManager<S> {
  private readonly tasks = new Map<number, Promise<StreamTask<S>>>();
  /** The partitions the group gave this process at the last join, and the membership they were given under. */
  private assigned = new Set<number>();
  private membershipOfJoin?: ConsumerGroupMetadata;
  private restoring = 0;
  private stopped = false;
  /** Consecutive failed take-overs per partition, for the back-off and the give-up. */
  private readonly takeOverFailures = new Map<number, number>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  /** Writes the restore markers (idempotent, not transactional). */
  private readonly markers: ProducerSlot;

  constructor(
    private readonly kafka: Kafka,
    private readonly options: TaskManagerOptions,
    private readonly handler: PartitionHandler<S>,
    private readonly producer: StreamsProducer,
    private readonly newTask: (state: S) => StreamTask<S>,
    private readonly logger: Logger,
    /** Called when taking partitions over kept failing. */
    private readonly giveUp: (error: Error) => void,
  ) {
    this.markers = new ProducerSlot(() => createProducer(kafka, { idempotent: true, maxInFlightRequests: 1 }));
  }

  /** The group membership of the last join. */
  get membership(): ConsumerGroupMetadata | undefined {
    return this.membershipOfJoin;
  }

  /** Every assigned partition is owned, its state restored (a failed take-over is retried first). */
  get ready(): boolean {
    return this.restoring === 0 && [...this.assigned].every((partition) => this.tasks.has(partition));
  }

  isAssigned(partition: number): boolean {
    return this.assigned.has(partition);
  }

  /** The states of the partitions owned right now (for gauges). */
  async states(): Promise<S[]> {
    const settled = await Promise.allSettled(this.tasks.values());
    return settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value.state] : []));
  }

  /**
   * A partition's state stays valid across a join only if nobody else can have owned it in between: the same member,
   * the very next generation. Otherwise (this member was dropped and joined again, or missed a generation) every
   * partition is taken over again, from what its owners committed.
   */
  onAssignment(membership: ConsumerGroupMetadata, assignment: Record<string, number[]>): void {
    const previous = this.membershipOfJoin;
    const continuous =
      previous !== undefined &&
      previous.memberId === membership.memberId &&
      previous.generationId + 1 === membership.generationId;
    this.membershipOfJoin = membership;
    const assigned = new Set(assignment[this.options.inputTopic] ?? []);
    this.assigned = assigned;
    void this.release([...this.tasks.keys()].filter((partition) => !continuous || !assigned.has(partition)));
    const added = [...assigned].filter((partition) => !this.tasks.has(partition));
    if (added.length > 0) this.acquire(added, async () => undefined);
    this.logger.log(
      `assigned partitions [${[...assigned].sort((a, b) => a - b).join(', ')}] in generation ${membership.generationId}`,
    );
  }

  /**
   * The task of an assigned partition, taken over first if this process does not own it yet, and whether that task
   * still owns the partition (not released since): told of the very take-over awaited, not of one that replaced it
   * meanwhile.
   */
  async taskOf(
    partition: number,
    heartbeat: () => Promise<void>,
  ): Promise<{ task: StreamTask<S>; current: () => boolean }> {
    if (!this.tasks.has(partition)) this.acquire([partition], heartbeat);
    const entry = this.tasks.get(partition)!;
    // Restoring can take a while: keep the group membership alive meanwhile.
    const beat = setInterval(() => void heartbeat().catch(() => undefined), 1000);
    try {
      return { task: await entry, current: () => this.tasks.get(partition) === entry };
    } finally {
      clearInterval(beat);
    }
  }

  /** Gives partitions up: their states are released, and a batch of theirs will take them over again. */
  async release(partitions: number[]): Promise<void> {
    const owned = partitions.flatMap((partition) => this.tasks.get(partition) ?? []);
    partitions.forEach((partition) => this.tasks.delete(partition));
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

  /** No more take-overs retried. */
  stop(): void {
    this.stopped = true;
    this.retryTimers.forEach((timer) => clearTimeout(timer));
  }

  /** Releases every partition this process owns. */
  releaseAll(): Promise<void> {
    return this.release([...this.tasks.keys()]);
  }

  /** Disconnects the marker writer (used again, it connects again). */
  async close(): Promise<void> {
    await this.markers.replace();
  }

  /** Takes over partitions: restore each one's state up to a fresh marker, then read where its owners stopped. */
  private acquire(partitions: number[], keepAlive: () => Promise<void>): void {
    this.restoring++;
    const acquired = this.takeOver(partitions, keepAlive).finally(() => this.restoring--);
    const entries = partitions.map((partition, i) => {
      const entry = acquired.then(({ tasks }) => tasks[i]);
      // A partition with no batch waiting must not turn a failure into an unhandled rejection.
      entry.catch(() => undefined);
      this.tasks.set(partition, entry);
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
          if (this.tasks.get(partition) === entries[i]) this.tasks.delete(partition);
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
      this.giveUp(
        new Error(
          `taking over partitions [${partitions.join(', ')}] failed ${attempts} times in a row, last: ${String(error)}`,
        ),
      );
      return;
    }
    const timer = setTimeout(
      () => {
        this.retryTimers.delete(timer);
        const again = partitions.filter((partition) => this.assigned.has(partition) && !this.tasks.has(partition));
        if (!this.stopped && again.length > 0) this.acquire(again, async () => undefined);
      },
      Math.min(10_000, 250 * 2 ** attempts),
    );
    this.retryTimers.add(timer);
  }

  private async takeOver(
    partitions: number[],
    keepAlive: () => Promise<void>,
  ): Promise<{ tasks: StreamTask<S>[]; stats: RestoreStats }> {
    const states: S[] = [];
    try {
      for (const partition of partitions) states.push(this.handler.createState(partition));
      const tasks = states.map((state) => this.newTask(state));
      // The transactional producers too: a process is ready only once its first round can begin at once.
      const [markerWriter] = await Promise.all([this.markers.get(), this.producer.connect()]);
      const markers = await writeRestoreMarkers(markerWriter, this.options.changelogTopic, partitions);
      const stats = await restoreChangelog(
        this.kafka,
        this.options.changelogTopic,
        partitions.map((partition, i) => ({
          partition,
          apply: (message) => this.handler.restore(tasks[i].state, message),
          local: this.handler.localState?.(tasks[i].state),
        })),
        markers,
        keepAlive,
      );
      // The offsets kafkajs fetched when the group formed may predate a commit that was pending then: start from the
      // stable committed offsets, so a batch a previous owner committed is never processed again.
      const committed = await this.committedOffsets();
      tasks.forEach((task, i) => task.startAt(committed.get(partitions[i]) ?? null));
      return { tasks, stats };
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
}
