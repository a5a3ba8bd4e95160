import type { TopicMessages } from 'kafkajs';
import type { ConsumerGroupMetadata } from './kafkajs-fixes/group-fencing';

/** One partition batch's share of a transaction: its output records and the input offset to commit with them. */
export interface CommitEntry {
  topic: string;
  partition: number;
  records: TopicMessages[];
  /** The offset after the batch's last input record. */
  offset: bigint;
  /** False once the batch must no longer commit (its partition was released since it was decided). */
  current?: () => boolean;
}

/** What one transaction commits: the entries of every partition batch that joined it, under one group membership. */
export interface Round {
  metadata: ConsumerGroupMetadata;
  entries: CommitEntry[];
}

/**
 * Commits a round as one Kafka transaction (records, offsets fenced by `round.metadata`, EndTxn) on the producer
 * numbered `slot`, which no other round uses meanwhile, and returns what the transaction wrote (`R`, given to every
 * batch of the round); or throws having aborted it.
 */
export type CommitRound<R = void> = (round: Round, slot: number) => Promise<R>;

interface PendingRound<R> extends Round {
  done: Promise<R>;
  resolve: (written: R) => void;
  reject: (error: unknown) => void;
}

const sameMembership = (a: ConsumerGroupMetadata, b: ConsumerGroupMetadata): boolean =>
  a.generationId === b.generationId && a.memberId === b.memberId;

/**
 * Gathers the partition batches a consumer decides into as few transactions as it can (exactly-once v2): up to
 * `concurrency` rounds commit at once, each on a transactional producer of its own, and every batch decided while
 * none may start joins the next round (natural batching, like the batching producer's requests). A lone batch waits
 * one event-loop turn, so the batches of one fetch, decided together, share their transaction. Rounds committing at
 * once hold
 * different partitions, since a partition's next batch is decided only once its previous one committed. A round
 * goes to the producer idle longest, whose previous transaction's markers have had the most time to be written.
 * Batches of different group generations never share a round: each commits under the membership its batches were
 * decided in, which the group coordinator refuses if the group moved on.
 */
export class CommitPipeline<R = void> {
  private readonly waiting: PendingRound<R>[] = [];
  private readonly committing = new Set<Promise<void>>();
  /** Producers with no round, idle longest first. */
  private readonly idle: number[];
  private scheduled = false;

  constructor(
    private readonly commitRound: CommitRound<R>,
    producers = 1,
    /** Rounds committing at once, at most `producers`. */
    private readonly concurrency = producers,
  ) {
    this.idle = Array.from({ length: producers }, (_, slot) => slot);
  }

  /**
   * Adds a batch to the next round; settles with what the round wrote once it has committed (or rejects when it has
   * not).
   */
  add(metadata: ConsumerGroupMetadata, entry: CommitEntry): Promise<R> {
    let round = this.waiting.at(-1);
    if (!round || !sameMembership(round.metadata, metadata)) {
      let resolve!: (written: R) => void;
      let reject!: (error: unknown) => void;
      const done = new Promise<R>((res, rej) => ((resolve = res), (reject = rej)));
      done.catch(() => undefined); // each adder awaits it; a round nobody awaits any more must not end the process
      round = { metadata, entries: [], done, resolve, reject };
      this.waiting.push(round);
    }
    round.entries.push(entry);
    this.schedule();
    return round.done;
  }

  /** Rounds waiting or committing. */
  get pending(): number {
    return this.waiting.length + this.committing.size;
  }

  /** Settles once every round added so far has committed or failed. */
  async drained(): Promise<void> {
    while (this.committing.size > 0 || this.waiting.length > 0) {
      await (this.committing.size > 0
        ? Promise.race(this.committing)
        : new Promise((resolve) => setImmediate(resolve)));
    }
  }

  private schedule(): void {
    if (this.committing.size >= this.concurrency || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.commitNext();
    });
  }

  private commitNext(): void {
    if (this.committing.size >= this.concurrency || this.idle.length === 0) return;
    const round = this.waiting.shift();
    if (!round) return;
    const slot = this.idle.shift()!;
    const { metadata, entries } = round;
    const committing: Promise<void> = this.commitRound({ metadata, entries }, slot)
      .then(round.resolve, round.reject)
      .finally(() => {
        this.committing.delete(committing);
        this.idle.push(slot);
        if (this.waiting.length > 0) this.schedule();
      });
    this.committing.add(committing);
    if (this.waiting.length > 0) this.schedule();
  }
}

/** The offsets a round commits: for each input partition, the offset after its last batch in the round. */
export function roundOffsets(
  entries: CommitEntry[],
): { topic: string; partitions: { partition: number; offset: string }[] }[] {
  const byTopic = new Map<string, Map<number, bigint>>();
  for (const { topic, partition, offset } of entries) {
    const partitions = byTopic.get(topic) ?? new Map<number, bigint>();
    const known = partitions.get(partition);
    if (known === undefined || offset > known) partitions.set(partition, offset);
    byTopic.set(topic, partitions);
  }
  return [...byTopic].map(([topic, partitions]) => ({
    topic,
    partitions: [...partitions].map(([partition, offset]) => ({ partition, offset: offset.toString() })),
  }));
}
