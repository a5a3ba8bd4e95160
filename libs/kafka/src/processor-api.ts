import type { KafkaMessage, TopicMessages } from 'kafkajs';
import type { Checkpoint, LocalState, RestoreStats } from './changelog-restore';

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
