/** One look at the commands topic: the consumers' committed offsets and the end offsets, summed over partitions. */
export interface BacklogSample {
  /** When it was taken (ms since the epoch). */
  at: number;
  /** Sum over partitions of the consumer group's committed offset (the log start where it has none). */
  committed: number;
  /** Sum over partitions of the end offset. */
  end: number;
}

/** Weight of the newest busy interval in the drain-rate average. */
const RATE_SMOOTHING = 0.3;

/**
 * How long a command published now would wait for the consumers, from the backlog and the rate at which they drain
 * it, the way Kafka's consumer-lag monitors (Burrow, KIP-1116's "time lag") read the group's offsets.
 *
 * - backlog: end offsets minus committed offsets of the commands topic (records);
 * - drain rate: committed records a second, averaged over the intervals in which the consumers had work the whole
 *   time (a backlog at the start of the interval): only then does it measure what they can do, not what arrived;
 * - stalled: a backlog and no progress since the last look (no consumer, or one that hangs); the time it has been
 *   stalled is added to the wait, since nothing says it will end sooner.
 *
 * wait = stalled for + backlog / drain rate (ms). Unknown (0) before the first two samples.
 */
export class BacklogEstimate {
  private last?: BacklogSample;
  /** Records a second the consumers drain when busy; 0 until measured. */
  private rate = 0;
  private stalledSince?: number;

  observe(sample: BacklogSample): void {
    const previous = this.last;
    this.last = sample;
    if (!previous || sample.at <= previous.at) return;
    const progressed = sample.committed - previous.committed;
    const busy = previous.end - previous.committed > 0;
    if (busy && progressed > 0) {
      const rate = (progressed * 1000) / (sample.at - previous.at);
      this.rate = this.rate === 0 ? rate : this.rate + RATE_SMOOTHING * (rate - this.rate);
    }
    if (busy && progressed <= 0) this.stalledSince ??= previous.at;
    else this.stalledSince = undefined;
  }

  /** Records between the consumers' committed offsets and the end of the commands topic, at the last look. */
  get backlog(): number {
    return this.last ? Math.max(0, this.last.end - this.last.committed) : 0;
  }

  /** When the last sample was taken (ms since the epoch), or 0. */
  get sampledAt(): number {
    return this.last?.at ?? 0;
  }

  /** Records a second the consumers drained when they last had work; 0 before that was seen. */
  get drainRate(): number {
    return this.rate;
  }

  /** The expected wait of a command published at `now` (ms), from the last sample. */
  waitMs(now: number): number {
    const stalled = this.stalledSince === undefined ? 0 : Math.max(0, now - this.stalledSince);
    const draining = this.rate > 0 ? (this.backlog * 1000) / this.rate : 0;
    return Math.round(stalled + draining);
  }
}
