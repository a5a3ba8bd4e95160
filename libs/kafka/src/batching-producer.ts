import { Logger } from '@nestjs/common';
import { Message, Producer, ProducerConfig } from 'kafkajs';
import { createProducer } from './kafka-client';
import { recordBytes } from './record-bytes';
import { errorChain } from './kafkajs-fixes/error-chain';

interface Pending {
  topic: string;
  message: Message;
  bytes: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface BatchingProducerOptions {
  /** For logs. */
  name: string;
  lingerMs: number;
  maxBatch: number;
  /** Bound on one produce request, below the broker's `message.max.bytes`. */
  maxBatchBytes: number;
  /** Told the duration and size of each produce request. */
  observe?: (seconds: number, records: number) => void;
  /**
   * How long sends to a topic the broker said does not exist fail at once, without asking again (ms; 0 or
   * absent: every send asks). For topics that never come back under the same name, such as reply topics.
   */
  goneTopicMs?: number;
  /** Told each time a broken producer was replaced. */
  replaced?: () => void;
}

/**
 * Errors after which a producer cannot go on. An idempotent producer's sequence numbers can no longer be trusted
 * after some: kafkajs rolls a failed request's sequence back even when later requests to the partition are in
 * flight, and from then on the broker answers OUT_OF_ORDER_SEQUENCE_NUMBER to everything. Only a new producer (a
 * new producer id) gets out of that.
 */
const FATAL_PRODUCER_ERRORS = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
  'PRODUCER_FENCED',
  'INVALID_TXN_STATE',
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
  // A topic deleted after this producer wrote to it (a stopped gateway's reply topic) stays in kafkajs' metadata
  // targets, and every metadata refresh fails from then on, for every topic: only a new producer forgets it.
  'UNKNOWN_TOPIC_OR_PARTITION',
]);

/** Whether the producer that failed with `error` must be replaced (kafkajs nests the cause in retry errors). */
export function needsNewProducer(error: unknown): boolean {
  return errorChain(error).some(({ type }) => type !== undefined && FATAL_PRODUCER_ERRORS.has(type));
}

/** A topic's producer not used for this long is closed (the reply topic of a gateway that went away). */
const IDLE_PRODUCER_MS = 5 * 60_000;

/** The error of a send to a topic that was found gone: the same type as kafkajs', for callers that look. */
export class TopicGoneError extends Error {
  readonly type = 'UNKNOWN_TOPIC_OR_PARTITION';
}

/** What a lane uses of a kafkajs producer. */
type LaneProducer = Pick<Producer, 'connect' | 'send' | 'disconnect'>;

/** Where lanes get their producers: a kafkajs `Kafka` (the unit tests give a fake one). */
export interface ProducerSource {
  producer(config: ProducerConfig): LaneProducer;
}

/** One topic's sends: its own producer, queue and requests in flight, so that no topic waits on another. */
interface Lane {
  topic: string;
  producer: Promise<LaneProducer> | null;
  lastUsed: number;
  queue: Pending[];
  queuedBytes: number;
  timer: NodeJS.Timeout | null;
  /** Produce requests on their way: while there are any, sends wait for them instead of a timer. */
  inFlight: number;
}

/**
 * Coalesces concurrent sends into one produce request: waiting on one produce per HTTP request is kafkajs'
 * known bottleneck. Batching is natural: while a produce is in flight, sends gather and go out together when it
 * completes, so the busier, the fuller each request; with none in flight, a send waits the short linger only.
 * Idempotent producers, acks=all, and a request bounded in records and bytes.
 * Each topic is a lane of its own (producer, queue, requests in flight), so that a topic that goes away (a stopped
 * gateway's reply topic, which kafkajs retries with back-off for seconds) delays nothing but its own sends; with
 * `goneTopicMs`, once the broker said it is gone, sends to it fail at once for that long. A produce that fails
 * fails only its own sends; one that leaves its producer broken also drops the producer, and the next send to the
 * topic gets a new one.
 */
export class BatchingProducer {
  private readonly logger: Logger;
  private readonly lanes = new Map<string, Lane>();
  /** Topics the broker said do not exist, and until when sends to them fail without asking again. */
  private readonly gone = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  /** Produce requests on their way, for disconnect to wait for. */
  private readonly requests = new Set<Promise<void>>();

  constructor(
    private readonly kafka: ProducerSource,
    private readonly options: BatchingProducerOptions,
  ) {
    this.logger = new Logger(options.name);
    this.sweeper = setInterval(() => this.closeIdle(), IDLE_PRODUCER_MS / 5);
    this.sweeper.unref();
  }

  /** Connects the producer for `topic` ahead of the first send, so that a broker problem shows at start. */
  async connect(topic: string): Promise<void> {
    const lane = this.laneFor(topic);
    const producer = this.producerOf(lane);
    try {
      await producer;
    } catch (error) {
      if (lane.producer === producer) lane.producer = null; // the next attempt opens anew
      throw error;
    }
  }

  /**
   * Sends what is queued, waits for every request on its way (each bounded by kafkajs' retries), then closes the
   * producers. kafkajs' own disconnect waits only for requests already written to a connection: a send still
   * fetching metadata reconnects the producer it was told is closed and leaves that connection open.
   */
  async disconnect(): Promise<void> {
    for (const lane of this.lanes.values()) this.flush(lane);
    this.closed = true;
    clearInterval(this.sweeper);
    await Promise.allSettled(this.requests);
    const all = [...this.lanes.values()];
    this.lanes.clear();
    await Promise.all(all.map((lane) => this.close(lane.producer)));
  }

  send(topic: string, message: Message): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.options.name} is stopped`));
    const goneUntil = this.gone.get(topic);
    if (goneUntil !== undefined && goneUntil > performance.now())
      return Promise.reject(new TopicGoneError(`the topic ${topic} does not exist`));
    return new Promise((resolve, reject) => {
      const lane = this.laneFor(topic);
      const bytes = recordBytes(message);
      lane.queue.push({ topic, message, bytes, resolve, reject });
      lane.queuedBytes += bytes;
      if (lane.queue.length >= this.options.maxBatch || lane.queuedBytes >= this.options.maxBatchBytes)
        this.flush(lane);
      else if (lane.inFlight === 0) lane.timer ??= setTimeout(() => this.flush(lane), this.options.lingerMs);
    });
  }

  private laneFor(topic: string): Lane {
    let lane = this.lanes.get(topic);
    if (!lane) {
      lane = {
        topic,
        producer: null,
        lastUsed: performance.now(),
        queue: [],
        queuedBytes: 0,
        timer: null,
        inFlight: 0,
      };
      this.lanes.set(topic, lane);
    }
    lane.lastUsed = performance.now();
    return lane;
  }

  private producerOf(lane: Lane): Promise<LaneProducer> {
    if (!lane.producer) {
      lane.producer = this.open();
      lane.producer.catch(() => undefined); // the sends that await it see the error
    }
    return lane.producer;
  }

  private async open(): Promise<LaneProducer> {
    const producer = createProducer(this.kafka, { idempotent: true, maxInFlightRequests: 5 });
    try {
      await producer.connect();
    } catch (error) {
      await producer.disconnect().catch(() => undefined);
      throw error;
    }
    return producer;
  }

  private flush(lane: Lane): void {
    if (lane.timer) clearTimeout(lane.timer);
    lane.timer = null;
    while (lane.queue.length > 0) {
      const request = this.produce(lane, this.take(lane));
      this.requests.add(request);
      void request.finally(() => this.requests.delete(request));
      if (lane.queue.length < this.options.maxBatch && lane.queuedBytes < this.options.maxBatchBytes) break;
    }
    if (lane.queue.length > 0 && lane.inFlight === 0) {
      lane.timer = setTimeout(() => this.flush(lane), this.options.lingerMs);
    }
  }

  /** The head of the lane's queue, up to the bounds (at least one send, however large). */
  private take(lane: Lane): Pending[] {
    let count = 0;
    let bytes = 0;
    while (
      count < lane.queue.length &&
      count < this.options.maxBatch &&
      (count === 0 || bytes + lane.queue[count].bytes <= this.options.maxBatchBytes)
    ) {
      bytes += lane.queue[count++].bytes;
    }
    lane.queuedBytes -= bytes;
    return lane.queue.splice(0, count);
  }

  private async produce(lane: Lane, waiting: Pending[]): Promise<void> {
    lane.inFlight++;
    try {
      await this.produceNow(lane, waiting);
    } finally {
      // What gathered meanwhile has waited long enough.
      if (--lane.inFlight === 0 && lane.queue.length > 0 && !this.closed) this.flush(lane);
    }
  }

  private async produceNow(lane: Lane, waiting: Pending[]): Promise<void> {
    const current = this.producerOf(lane);
    const started = process.hrtime.bigint();
    try {
      const producer = await current;
      await producer.send({ topic: lane.topic, acks: -1, messages: waiting.map((pending) => pending.message) });
      this.options.observe?.(Number(process.hrtime.bigint() - started) / 1e9, waiting.length);
      waiting.forEach((pending) => pending.resolve());
    } catch (error) {
      waiting.forEach((pending) => pending.reject(error));
      if (isTopicGone(error) && this.options.goneTopicMs) return this.forgetGone(lane, error);
      const connected = await current.then(
        () => true,
        () => false,
      );
      if (lane.producer === current && (needsNewProducer(error) || !connected)) this.drop(lane, current, error);
    }
  }

  /**
   * The broker says the topic does not exist: what waits for it fails now, later sends fail at once, and its
   * producer goes (kafkajs would keep asking for the topic's metadata on every refresh).
   */
  private forgetGone(lane: Lane, error: unknown): void {
    this.gone.set(lane.topic, performance.now() + this.options.goneTopicMs!);
    if (this.lanes.get(lane.topic) === lane) this.lanes.delete(lane.topic);
    if (lane.timer) clearTimeout(lane.timer);
    lane.timer = null;
    lane.queue.splice(0).forEach((pending) => pending.reject(error));
    lane.queuedBytes = 0;
    void this.close(lane.producer);
    lane.producer = null;
    this.logger.log(`the topic ${lane.topic} is gone: sends to it fail at once for ${this.options.goneTopicMs} ms`);
  }

  /** Forgets a broken (or never connected) producer: the next send to the topic opens a new one. */
  private drop(lane: Lane, broken: Promise<LaneProducer>, error: unknown): void {
    this.logger.warn(`replacing the Kafka producer of ${lane.topic} after: ${String(error)}`);
    lane.producer = null;
    this.options.replaced?.();
    void this.close(broken);
  }

  private async close(producer: Promise<LaneProducer> | null): Promise<void> {
    await producer
      ?.then(
        (p) => p.disconnect(),
        () => undefined,
      )
      .catch(() => undefined);
  }

  private closeIdle(): void {
    const now = performance.now();
    for (const [topic, until] of this.gone) if (until <= now) this.gone.delete(topic);
    for (const [topic, lane] of this.lanes) {
      if (now - lane.lastUsed < IDLE_PRODUCER_MS || lane.queue.length > 0 || lane.inFlight > 0) continue;
      this.lanes.delete(topic);
      void this.close(lane.producer);
    }
  }
}

/** Whether `error` says the topic does not exist (kafkajs nests the cause in retry errors). */
function isTopicGone(error: unknown): boolean {
  return errorChain(error).some(({ type }) => type === 'UNKNOWN_TOPIC_OR_PARTITION');
}
