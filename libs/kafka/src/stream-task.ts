import { Logger } from '@nestjs/common';
import { Batch, Consumer, EachBatchPayload } from 'kafkajs';
import { setTimeout as sleep } from 'node:timers/promises';
import { changelogCheckpoint } from './changelog-restore';
import { CommitEntry } from './commit-pipeline';
import { fetchedOffsetOf } from './kafkajs-fixes/fetched-offset';
import { ConsumerGroupMetadata } from './kafkajs-fixes/group-fencing';
import type { BatchResult, PartitionHandler, ProcessorObserver } from './processor-api';
import type { StreamsProducer, RoundWritten } from './streams-producer';

/**
 * Batches of one partition decided and not yet committed, at most, in a handler that decides on uncommitted batches:
 * one committing, one waiting for the next round. Bounds what a partition holds in memory (a fetch each).
 */
const UNCOMMITTED_BATCHES = 2;

/**
 * Partitions the consumer was sent back to read again from an offset (see StreamTask's batches not committed), until
 * it does: a batch fetched before must not jump ahead of the records read again.
 */
export class ConsumerRewind {
  private readonly resumeAt = new Map<number, bigint>();

  constructor(
    private readonly consumer: Pick<Consumer, 'seek'>,
    private readonly logger: Logger,
  ) {}

  /** Sends the consumer back to read `topic`/`partition` again from `offset`. */
  rewind(topic: string, partition: number, offset: bigint): void {
    this.resumeAt.set(partition, offset);
    try {
      this.consumer.seek({ topic, partition, offset: offset.toString() });
    } catch (seekError) {
      this.logger.warn(`could not read ${topic}/${partition} again: ${String(seekError)}`);
    }
  }

  /** True for a batch fetched before the consumer was sent back to read its partition again: it is to be skipped. */
  fetchedBefore(batch: Batch): boolean {
    const resumeAt = this.resumeAt.get(batch.partition);
    if (resumeAt === undefined) return false;
    if (fetchedOffsetOf(batch) > resumeAt) return true;
    this.resumeAt.delete(batch.partition);
    return false;
  }

  /** A new assignment reads from the committed offsets. */
  clear(): void {
    this.resumeAt.clear();
  }
}

/** What the tasks of one processor share. */
export interface TaskContext<S> {
  readonly logger: Logger;
  readonly handler: PartitionHandler<S>;
  /** The changelog topic, partition for partition with the input topic. */
  readonly changelogTopic: string;
  readonly observer?: ProcessorObserver;
  /** Where decided batches go to commit, a round at a time. */
  readonly producer: Pick<StreamsProducer, 'add'>;
  readonly rewind: ConsumerRewind;
  /** The group membership of the last join: a batch decided now commits under it, or not at all. */
  membership(): ConsumerGroupMetadata | undefined;
  stopped(): boolean;
  /** Gives the partition up, to be taken over again (its state is no longer trusted). */
  release(partition: number): void;
}

/** How long a batch took, in seconds, and how many input records it had. */
interface BatchOutcome {
  records: number;
  seconds: number;
}

/**
 * The task of one input partition this process owns (Kafka Streams' StreamTask): its state, and where its processing
 * stands. Its batches are decided one at a time, in offset order, and each commits in a round of the process's
 * StreamsProducer; a batch that did not commit makes the partition be taken over again.
 */
export class StreamTask<S> {
  /** The offset after the last batch this owner decided: a batch fetched again is not processed again. */
  private next: bigint | null = null;
  /**
   * The offset after the last batch of this owner that committed (or where the owner started): where the consumer
   * reads again from when a batch after it is not committed.
   */
  private committed: bigint | null = null;
  /** The tail of this partition's batches: decided one at a time, in offset order. */
  private turn: Promise<void> = Promise.resolve();
  /** Batches decided and not yet settled (committed or not); each settles without throwing. */
  private readonly uncommitted = new Set<Promise<void>>();

  constructor(
    readonly state: S,
    private readonly context: TaskContext<S>,
  ) {}

  /** Where this owner starts: the partition's committed offset (null when none: from the log's start). */
  startAt(committed: bigint | null): void {
    this.next = this.committed = committed;
  }

  /**
   * Processes a fetched batch in its turn. `current` tells whether this task still owns its partition (it is released
   * when a batch of it does not commit, or when the group takes the partition away).
   */
  async process(payload: EachBatchPayload, current: () => boolean, heartbeat: () => Promise<void>): Promise<void> {
    // kafkajs may hand out a partition's records again while a batch of it is still committing (it re-reads the
    // committed offset on a rebalance). Batches of one partition therefore run strictly one after another, and
    // records this owner already committed are skipped.
    const turn = this.turn.then(() => this.processInTurn(payload, current, heartbeat));
    this.turn = turn.catch(() => undefined);
    await turn;
  }

  private async processInTurn(
    payload: EachBatchPayload,
    current: () => boolean,
    heartbeat: () => Promise<void>,
  ): Promise<void> {
    const { batch } = payload;
    const { handler, observer } = this.context;
    const pipelined = handler.decidesOnUncommitted === true;
    while (pipelined && this.uncommitted.size >= UNCOMMITTED_BATCHES) await Promise.race(this.uncommitted);
    // Released meanwhile (revoked, or its state is no longer trusted): the next owner takes over.
    const membership = this.context.membership();
    if (!current() || !membership || this.context.stopped()) return;
    const fresh =
      this.next === null ? batch.messages : batch.messages.filter((message) => BigInt(message.offset) >= this.next!);
    if (fresh.length === 0) {
      payload.resolveOffset(batch.lastOffset());
      return;
    }
    this.committed ??= BigInt(fresh[0].offset); // nothing committed before: this owner reads from the log's start
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    observer?.lag(batch.partition, Number(batch.offsetLag()));
    const result = handler.processBatch(this.state, {
      topic: batch.topic,
      partition: batch.partition,
      messages: fresh,
    });
    const next = BigInt(batch.lastOffset()) + 1n;
    this.next = next;
    const commitEntry: CommitEntry = {
      topic: batch.topic,
      partition: batch.partition,
      records: result.records,
      offset: next,
      current,
    };
    // Decided under this membership: its transaction commits under it, or not at all.
    const settled = this.context.producer.add(membership, commitEntry).then(
      (round) => {
        const outcome = { records: fresh.length, seconds: seconds() };
        if (round.included.has(commitEntry)) return this.onCommitted(current, commitEntry, result, round, outcome);
        this.onNotCommitted(current, batch, result, new Error('its partition was released first'), outcome);
        return false;
      },
      (error: unknown) => {
        this.onNotCommitted(current, batch, result, error, { records: fresh.length, seconds: seconds() });
        return false;
      },
    );
    const tracked = settled.then(() => undefined);
    this.uncommitted.add(tracked);
    void tracked.finally(() => this.uncommitted.delete(tracked));
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
  private onCommitted(
    current: () => boolean,
    batch: CommitEntry,
    result: BatchResult,
    round: RoundWritten,
    { records, seconds }: BatchOutcome,
  ): boolean {
    this.committed = batch.offset;
    const written = result.records.reduce((sum, { messages }) => sum + messages.length, 0);
    this.context.observer?.batch(records, seconds, true, written);
    // The round's requests carry the changelog records of every partition in it: the checkpoint is where the records
    // of the batch's own changelog partition went, which only the responses to those requests tell. It may lie past
    // this batch's records when a later batch of the partition shares the round: only that last batch moves it.
    const last = [...round.included].filter(({ partition }) => partition === batch.partition).at(-1) === batch;
    try {
      result.afterCommit(
        last
          ? changelogCheckpoint(round.requests, round.written, this.context.changelogTopic, batch.partition)
          : undefined,
      );
    } catch (error) {
      // The state store could not take a committed batch: take the partition over again, which replays it.
      this.context.logger.error(
        `the state of ${batch.topic}/${batch.partition} missed a committed batch: ${String(error)}`,
      );
      if (current()) this.giveUp(batch.topic, batch.partition);
    }
    return true;
  }

  /**
   * Releases the partition to be taken over again. The batches decided after the last committed one will not commit
   * (they are left out of their rounds), so the consumer reads again from there.
   */
  private giveUp(topic: string, partition: number): void {
    if (this.committed !== null && this.context.handler.decidesOnUncommitted) {
      this.context.rewind.rewind(topic, partition, this.committed);
    }
    this.context.release(partition);
  }

  /**
   * The batch's transaction did not commit (or it was left out of it). This process is unsure of what committed:
   * the partition is taken over again, which restores its state from what did, and the consumer reads again from
   * after the last batch known to have committed (the new owner skips whatever did commit beyond it).
   */
  private onNotCommitted(
    current: () => boolean,
    batch: EachBatchPayload['batch'],
    result: BatchResult,
    error: unknown,
    { records, seconds }: BatchOutcome,
  ): void {
    result.aborted?.(error);
    this.context.observer?.batch(records, seconds, false, 0);
    if (!current()) return; // already released
    this.context.logger.warn(
      `batch ${batch.topic}/${batch.partition}@${batch.firstOffset()} not committed (${String(error)}); it will be retried`,
    );
    this.giveUp(batch.topic, batch.partition);
  }
}
