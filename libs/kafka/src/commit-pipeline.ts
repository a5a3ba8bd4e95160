import type { TopicMessages } from 'kafkajs';
import type { ConsumerGroupMetadata } from './kafkajs-fixes/group-fencing';

/** One partition batch's share of a transaction: its output records and the input offset to commit with them. */
export interface CommitEntry {
  topic: string;
  partition: number;
  records: TopicMessages[];
  /** The offset after the batch's last input record. */
  offset: bigint;
}

/** What one transaction commits: the entries of every partition batch that joined it, under one group membership. */
export interface Round {
  metadata: ConsumerGroupMetadata;
  entries: CommitEntry[];
}

/**
 * Commits a round as one Kafka transaction (records, offsets fenced by `round.metadata`, EndTxn), or throws having
 * aborted it. `sequence` counts the rounds, from 0.
 */
export type CommitRound = (round: Round, sequence: number) => Promise<void>;

interface PendingRound extends Round {
  done: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

const sameMembership = (a: ConsumerGroupMetadata, b: ConsumerGroupMetadata): boolean =>
  a.generationId === b.generationId && a.memberId === b.memberId;

/**
 * Gathers the partition batches a consumer decides into as few transactions as it can (exactly-once v2): one round
 * commits at a time, and every batch decided while it commits joins the next one (natural batching, like the
 * batching producer's requests). A lone batch waits one event-loop turn, so the batches of one fetch, decided
 * together, share their transaction. Batches of different group generations never share one: each round commits
 * under the membership its batches were decided in, which the group coordinator refuses if the group moved on.
 */
export class CommitPipeline {
  private readonly waiting: PendingRound[] = [];
  private committing: Promise<void> | undefined;
  private scheduled = false;
  private sequence = 0;

  constructor(private readonly commitRound: CommitRound) {}

  /** Adds a batch to the next round; settles when that round has committed (or rejects when it has not). */
  add(metadata: ConsumerGroupMetadata, entry: CommitEntry): Promise<void> {
    let round = this.waiting.at(-1);
    if (!round || !sameMembership(round.metadata, metadata)) {
      let resolve!: () => void;
      let reject!: (error: unknown) => void;
      const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
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
    return this.waiting.length + (this.committing ? 1 : 0);
  }

  /** Settles once every round added so far has committed or failed. */
  async drained(): Promise<void> {
    while (this.committing || this.waiting.length > 0) {
      await (this.committing ?? new Promise((resolve) => setImmediate(resolve)));
    }
  }

  private schedule(): void {
    if (this.committing || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.commitNext();
    });
  }

  private commitNext(): void {
    const round = this.waiting.shift();
    if (!round || this.committing) return;
    const { metadata, entries } = round;
    this.committing = this.commitRound({ metadata, entries }, this.sequence++)
      .then(round.resolve, round.reject)
      .finally(() => {
        this.committing = undefined;
        if (this.waiting.length > 0) this.schedule();
      });
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
