import { KafkaMessage } from 'kafkajs';
import { BatchResult, Checkpoint, InputBatch, LocalState, PartitionHandler } from '@app/kafka';
import { LogPosition } from '@app/matrix';
import { DiskStore } from '../store/disk-store';
import { KeyedStore } from '../store/keyed-store';
import { StateBudget } from '../store/state-budget';
import { StateDirectory } from '../store/state-directory';
import { WriteBuffer } from '../store/write-buffer';
import { BatchTrace } from './batch-trace';
import { RecordCollector, ReplySender } from './record-collector';

/** What became of the records of one batch, for metrics. */
export interface OutcomeCounts {
  accepted: number;
  /** Answered from the state: a retry, or a concurrent duplicate. */
  duplicates: number;
  /** Refused for good (a duplicate annotation). */
  rejected: number;
  /** Turned away with a retryable 503: the state budget was spent. */
  refused: number;
  /** Older than the window: dead-lettered unprocessed, since they can no longer be deduplicated. */
  expired: number;
  /** Could not be decoded or processed: dead-lettered. */
  deadLetters: number;
}

/** What a stage sees while it decides one record. */
export interface RecordContext<S, V> {
  /** The committed state; read through `staged` to see this batch's changes too. */
  readonly store: S;
  readonly staged: WriteBuffer<V>;
  readonly out: RecordCollector;
  readonly position: LogPosition;
  /** Partitions of the stage's input topic, and so of every topic co-partitioned with it. */
  readonly partitions: number;
  readonly now: number;
  readonly counts: OutcomeCounts;
  /** Takes `entries` from the state budget for what the record will remember; false when it is spent. */
  readonly reserve: (entries: number) => boolean;
  /** Takes one from the bound of held annotations; false when it is spent. */
  readonly reserveHeld: () => boolean;
  /** STATE_MAX_HELD_ANNOTATIONS_PER_SENDER: annotations one sender may hold in one partition. */
  readonly heldPerSender: number;
}

/**
 * A stage of the consumer: its state store and changelog, how to read its input, and its decision per record.
 * The batch loop, dead letters, the window, the budget and the commit protocol are the same for every stage.
 */
export interface Stage<S extends KeyedStore<V>, V, R> {
  readonly changelogTopic: string;
  /** The stage's store over one partition's disk store. */
  createStore(disk: DiskStore): S;
  /** A changelog record as the store keeps it; null for a tombstone (or anything else, which is skipped). */
  decodeChangelog(key: string, value: Buffer | null): V | null;
  /** One input record; throws for a record that cannot be processed, which is dead-lettered. */
  decode(value: Buffer | null): R;
  /**
   * True when the stage reads its state only through `staged.get`: a batch can then be decided while the batches
   * before it still commit, reading their changes (see PartitionHandler.decidesOnUncommitted). A stage that also
   * asks its store questions across keys (held annotations by sender or event) leaves it unset.
   */
  readonly decidesOnUncommitted?: boolean;
  /** Changes staged before the batch's records: tombstones of what the store forgot, say. */
  beginBatch?(store: S, staged: WriteBuffer<V>): void;
  process(record: R, context: RecordContext<S, V>): void;
}

export interface StageOptions {
  /** Partitions of the input topic (and of the topics co-partitioned with it). */
  partitions: number;
  windowMs: number;
  deadLetterTopic: string;
  /** KAFKA_REPLY_TOPIC_PREFIX: replies go to no topic outside it. */
  replyTopicPrefix: string;
  budget: StateBudget;
  heldPerSender: number;
  /** Where the partitions' stores live, and the consumer group they belong to (part of their path). */
  directory: StateDirectory;
  group: string;
  sendReply: ReplySender;
  observe?: (counts: OutcomeCounts) => void;
}

/**
 * A command published longer ago than the dedup window may be a retry of a transaction already forgotten: it can
 * no longer be deduplicated, so it is never appended (it is dead-lettered as `expired`).
 */
export function isPastWindow(publishedAtMs: number, now: number, windowMs: number): boolean {
  return publishedAtMs <= now - windowMs;
}

/** Runs a stage as the exactly-once processor's partition handler: one batch, one transaction, one collector. */
export class StageHandler<S extends KeyedStore<V>, V, R> implements PartitionHandler<S> {
  constructor(
    private readonly stage: Stage<S, V, R>,
    private readonly options: StageOptions,
  ) {}

  private readonly disks = new Map<S, DiskStore>();
  /** Per store, the changes of batches decided and not yet committed or aborted, oldest first. */
  private readonly uncommitted = new Map<S, WriteBuffer<V>[]>();

  get decidesOnUncommitted(): boolean {
    return this.stage.decidesOnUncommitted === true;
  }

  /**
   * Opens the partition's store on disk. Throws when the disk refuses (the take-over fails), and tells the state
   * directory, as every store operation below does: a full disk is the operator's to fix, not a reason to exit.
   */
  createState(partition: number): S {
    const disk = this.onDisk(`opening the state of ${this.stage.changelogTopic}/${partition}`, () =>
      this.options.directory.openStore(this.options.group, this.stage.changelogTopic, partition),
    );
    const store = this.stage.createStore(disk);
    this.disks.set(store, disk);
    return this.options.budget.track(store);
  }

  release(store: S): void {
    this.options.budget.untrack(store);
    this.uncommitted.delete(store);
    const disk = this.disks.get(store);
    this.disks.delete(store);
    if (disk) {
      try {
        this.options.directory.closeStore(disk); // closed whatever it throws
      } catch (error) {
        this.options.directory.refused(error, `closing the state of ${this.stage.changelogTopic}`);
      }
    }
  }

  localState(store: S): LocalState {
    const restoring = `restoring the state of ${this.stage.changelogTopic}`;
    return {
      checkpoint: () => store.checkpoint(),
      clear: () => this.onDisk(restoring, () => store.clear()),
      restored: async (checkpoint) => {
        try {
          await store.restored(checkpoint);
        } catch (error) {
          this.options.directory.refused(error, restoring);
          throw error;
        }
      },
    };
  }

  restore(store: S, message: KafkaMessage): void {
    const key = message.key?.toString();
    if (key)
      this.onDisk(`restoring the state of ${this.stage.changelogTopic}`, () =>
        store.apply(key, this.stage.decodeChangelog(key, message.value)),
      );
  }

  /** Runs a store operation; an error from the disk is reported to the state directory, and thrown on. */
  private onDisk<T>(doing: string, operation: () => T): T {
    try {
      return operation();
    } catch (error) {
      this.options.directory.refused(error, doing);
      throw error;
    }
  }

  processBatch(store: S, batch: InputBatch): BatchResult {
    const now = Date.now();
    const staged = this.stagedOver(store);
    const out = new RecordCollector(this.options.deadLetterTopic, this.options.replyTopicPrefix);
    const counts: OutcomeCounts = { accepted: 0, duplicates: 0, rejected: 0, refused: 0, expired: 0, deadLetters: 0 };
    let room = this.options.budget.remaining();
    const reserve = (entries: number): boolean => (room -= entries) >= 0;
    const traced = BatchTrace.start(batch);
    let heldRoom = this.options.budget.remainingHeld();
    const reserveHeld = (): boolean => heldRoom-- > 0;
    const heldPerSender = this.options.heldPerSender;
    this.stage.beginBatch?.(store, staged);
    for (const [index, message] of batch.messages.entries()) {
      out.trace = traced?.record(index);
      const position = { topic: batch.topic, partition: batch.partition, offset: message.offset };
      const source = `${position.topic}/${position.partition}/${position.offset}`;
      try {
        if (isPastWindow(Number(message.timestamp), now, this.options.windowMs)) {
          counts.expired++;
          out.deadLetter(message, source, 'expired');
          continue;
        }
        const partitions = this.options.partitions;
        const context = { store, staged, out, position, partitions, now, counts, reserve, reserveHeld, heldPerSender };
        this.stage.process(this.stage.decode(message.value), context);
      } catch (error) {
        counts.deadLetters++;
        out.deadLetter(message, source, error instanceof Error ? error.message : String(error));
      }
    }
    out.add(this.stage.changelogTopic, ...staged.toChangelog(batch.partition));
    traced?.transaction();
    return {
      records: out.records(),
      // The transaction committed, so the answers are right whatever the disk says; a store that could not take the
      // batch throws, and the processor takes the partition over again (replaying from the store's checkpoint).
      afterCommit: (checkpoint?: Checkpoint) => {
        traced?.end();
        try {
          this.onDisk(`writing a committed batch to the state of ${this.stage.changelogTopic}/${batch.partition}`, () =>
            store.commit(staged.entries(), checkpoint),
          );
        } finally {
          this.settled(store, staged);
          out.sendReplies(this.options.sendReply);
          this.options.observe?.(counts);
        }
      },
      aborted: (error) => {
        this.settled(store, staged);
        traced?.end(error);
      },
    };
  }

  /**
   * A batch's buffer over the committed store and, in a stage that decides on uncommitted batches, over the changes
   * of those (newest first): batches of a partition commit in the order they were decided, so this is the state the
   * batch will commit on top of.
   */
  private stagedOver(store: S): WriteBuffer<V> {
    if (!this.decidesOnUncommitted) return new WriteBuffer<V>((key) => store.get(key));
    const pending = this.uncommitted.get(store) ?? [];
    this.uncommitted.set(store, pending);
    const earlier = [...pending];
    const staged = new WriteBuffer<V>((key) => {
      for (let i = earlier.length - 1; i >= 0; i--) {
        const change = earlier[i].change(key);
        if (change) return change.value ?? undefined;
      }
      return store.get(key);
    });
    pending.push(staged);
    return staged;
  }

  /** The batch committed (its changes are in the store now) or aborted (the partition is restored again). */
  private settled(store: S, staged: WriteBuffer<V>): void {
    const pending = this.uncommitted.get(store);
    const at = pending?.indexOf(staged) ?? -1;
    if (at >= 0) pending!.splice(at, 1);
  }
}
