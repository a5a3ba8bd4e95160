import { randomUUID } from 'node:crypto';
import { Kafka, Producer, RecordMetadata, TopicMessages, Transaction } from 'kafkajs';
import { CommitEntry, CommitPipeline, Round, roundOffsets } from './commit-pipeline';
import { createProducer } from './kafka-client';
import { ConsumerGroupMetadata, sendOffsetsToTransaction } from './kafkajs-fixes/group-fencing';
import type { ProcessorObserver } from './processor-api';
import { chunkByBytes } from './record-bytes';

/**
 * Transactional producers used in turn, one transaction each: the next round's first request does not wait for the
 * coordinator to finish writing the previous round's markers (it answers CONCURRENT_TRANSACTIONS until then).
 */
const TRANSACTIONAL_PRODUCERS = 2;

/** A producer, connected on first use, and connected again (same transactional id, if any) after a failure. */
export class ProducerSlot {
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
 * What a committed round wrote: its produce requests and each one's answer (`written[i]` answers `requests[i]`),
 * from which each batch of the round finds its own changelog partition's checkpoint.
 */
export interface RoundWritten {
  requests: TopicMessages[][];
  written: RecordMetadata[][];
  /** The batches the transaction held: a batch whose partition was released before its round began is left out. */
  included: Set<CommitEntry>;
}

export interface StreamsProducerOptions {
  /** The consumer group whose offsets the transactions commit; also the prefix of the transactional ids. */
  groupId: string;
  /** Bound on one produce request of a transaction: a round's output goes out in as many requests as it needs. */
  maxRequestBytes: number;
  /** transaction.timeout.ms of the transactional producers. */
  transactionTimeoutMs: number;
  /** Told about every transaction, committed or not. */
  observer?: ProcessorObserver;
}

/**
 * The transactional producers of one process, shared by all its tasks (Kafka Streams' StreamsProducer under
 * exactly-once v2, KIP-447): the batches the tasks decide join rounds (see CommitPipeline), and each round is one
 * transaction, on producers of this process (not of a partition): the round's records, in produce requests of at
 * most maxRequestBytes, and its input offsets, fenced by the group membership the round's batches were decided
 * under. A producer whose transaction could not even be aborted is replaced: its successor's initialisation aborts
 * what it left open.
 */
export class StreamsProducer {
  private readonly producers: ProducerSlot[];
  private readonly pipeline = new CommitPipeline<RoundWritten>(
    (round, slot) => this.commitRound(round, slot),
    TRANSACTIONAL_PRODUCERS,
    1, // one round at a time: rounds committing side by side measured slower on three brokers (README, Performance)
  );

  constructor(
    kafka: Kafka,
    private readonly options: StreamsProducerOptions,
  ) {
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
  }

  /** Connects every transactional producer (once; again after a failure), so that the next round can begin at once. */
  connect(): Promise<Producer[]> {
    return Promise.all(this.producers.map((slot) => slot.get()));
  }

  /**
   * Adds a batch decided under `membership` to the next round: settles with what the round wrote once it committed
   * (the batch is in `included` unless its partition was released first), or rejects when it did not.
   */
  add(membership: ConsumerGroupMetadata, entry: CommitEntry): Promise<RoundWritten> {
    return this.pipeline.add(membership, entry);
  }

  /** Settles once every round added so far has committed or failed. */
  drained(): Promise<void> {
    return this.pipeline.drained();
  }

  /** Disconnects the producers (a producer used again afterwards connects again). */
  async close(): Promise<void> {
    await Promise.all(this.producers.map((slot) => slot.replace()));
  }

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
