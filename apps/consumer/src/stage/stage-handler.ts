import { KafkaMessage } from 'kafkajs';
import { BatchResult, InputBatch, PartitionHandler } from '@app/kafka';
import { LogPosition } from '@app/matrix';
import { KeyedStore } from '../store/keyed-store';
import { StateBudget } from '../store/state-budget';
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
  /** Takes `entries` from the memory budget for what the record will remember; false when it is spent. */
  readonly reserve: (entries: number) => boolean;
}

/**
 * A stage of the consumer: its state store and changelog, how to read its input, and its decision per record.
 * The batch loop, dead letters, the window, the budget and the commit protocol are the same for every stage.
 */
export interface Stage<S extends KeyedStore<V>, V, R> {
  readonly changelogTopic: string;
  createStore(): S;
  /** A changelog record as the store keeps it; null for a tombstone (or anything else, which is skipped). */
  decodeChangelog(key: string, value: Buffer | null): V | null;
  /** One input record; throws for a record that cannot be processed, which is dead-lettered. */
  decode(value: Buffer | null): R;
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

  createState(): S {
    return this.options.budget.track(this.stage.createStore());
  }

  release(store: S): void {
    this.options.budget.untrack(store);
  }

  restore(store: S, message: KafkaMessage): void {
    const key = message.key?.toString();
    if (key) store.apply(key, this.stage.decodeChangelog(key, message.value));
  }

  processBatch(store: S, batch: InputBatch): BatchResult {
    const now = Date.now();
    const staged = new WriteBuffer<V>((key) => store.get(key));
    const out = new RecordCollector(this.options.deadLetterTopic, this.options.replyTopicPrefix);
    const counts: OutcomeCounts = { accepted: 0, duplicates: 0, rejected: 0, refused: 0, expired: 0, deadLetters: 0 };
    let room = this.options.budget.remaining();
    const reserve = (entries: number): boolean => (room -= entries) >= 0;
    const traced = BatchTrace.start(batch);
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
        const context = { store, staged, out, position, partitions: this.options.partitions, now, counts, reserve };
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
      afterCommit: () => {
        traced?.end();
        staged.commit((key, value) => store.apply(key, value));
        out.sendReplies(this.options.sendReply);
        this.options.observe?.(counts);
      },
      aborted: (error) => traced?.end(error),
    };
  }
}
