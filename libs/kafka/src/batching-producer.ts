import { Logger } from '@nestjs/common';
import { Kafka, Message, Producer } from 'kafkajs';
import { createProducer } from './kafka-client';
import { recordBytes } from './record-bytes';
import { errorChain } from './retry';

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

interface TopicProducer {
  producer: Promise<Producer>;
  lastUsed: number;
}

/**
 * Coalesces concurrent sends into one produce request: waiting on one produce per HTTP request is kafkajs'
 * known bottleneck. Batching is natural: while a produce is in flight, sends gather and go out together when it
 * completes, so the busier, the fuller each request; with none in flight, a send waits the short linger only.
 * Idempotent producers, acks=all, and a request bounded in records and bytes.
 * One producer per topic, so that a topic that goes away (a stopped gateway's reply topic) can break nothing but
 * its own sends. A produce that fails fails only its own sends; one that leaves its producer broken also drops the
 * producer, and the next send to the topic gets a new one.
 */
export class BatchingProducer {
  private readonly logger: Logger;
  private readonly producers = new Map<string, TopicProducer>();
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Produce requests on their way: while there are any, sends wait for them instead of a timer. */
  private inFlight = 0;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly options: BatchingProducerOptions,
  ) {
    this.logger = new Logger(options.name);
    this.sweeper = setInterval(() => this.closeIdle(), IDLE_PRODUCER_MS / 5);
    this.sweeper.unref();
  }

  /** Connects the producer for `topic` ahead of the first send, so that a broker problem shows at start. */
  async connect(topic: string): Promise<void> {
    const producer = this.producerFor(topic);
    try {
      await producer;
    } catch (error) {
      if (this.producers.get(topic)?.producer === producer) this.producers.delete(topic); // the next attempt opens anew
      throw error;
    }
  }

  async disconnect(): Promise<void> {
    this.flush();
    this.closed = true;
    clearInterval(this.sweeper);
    const all = [...this.producers.values()];
    this.producers.clear();
    await Promise.all(
      all.map(({ producer }) =>
        producer.then(
          (p) => p.disconnect(),
          () => undefined,
        ),
      ),
    );
  }

  send(topic: string, message: Message): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.options.name} is stopped`));
    return new Promise((resolve, reject) => {
      const bytes = recordBytes(message);
      this.queue.push({ topic, message, bytes, resolve, reject });
      this.queuedBytes += bytes;
      if (this.queue.length >= this.options.maxBatch || this.queuedBytes >= this.options.maxBatchBytes) this.flush();
      else if (this.inFlight === 0) this.timer ??= setTimeout(() => this.flush(), this.options.lingerMs);
    });
  }

  private producerFor(topic: string): Promise<Producer> {
    let entry = this.producers.get(topic);
    if (!entry) {
      const producer = this.open();
      producer.catch(() => undefined); // the sends that await it see the error
      entry = { producer, lastUsed: performance.now() };
      this.producers.set(topic, entry);
    }
    entry.lastUsed = performance.now();
    return entry.producer;
  }

  private async open(): Promise<Producer> {
    const producer = createProducer(this.kafka, { idempotent: true, maxInFlightRequests: 5 });
    try {
      await producer.connect();
    } catch (error) {
      await producer.disconnect().catch(() => undefined);
      throw error;
    }
    return producer;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.queue.length > 0) {
      this.produce(this.take());
      if (this.queue.length < this.options.maxBatch && this.queuedBytes < this.options.maxBatchBytes) break;
    }
    if (this.queue.length > 0 && this.inFlight === 0) {
      this.timer = setTimeout(() => this.flush(), this.options.lingerMs);
    }
  }

  /** The head of the queue, up to the bounds (at least one send, however large). */
  private take(): Pending[] {
    let count = 0;
    let bytes = 0;
    while (
      count < this.queue.length &&
      count < this.options.maxBatch &&
      (count === 0 || bytes + this.queue[count].bytes <= this.options.maxBatchBytes)
    ) {
      bytes += this.queue[count++].bytes;
    }
    this.queuedBytes -= bytes;
    return this.queue.splice(0, count);
  }

  private produce(batch: Pending[]): void {
    const byTopic = new Map<string, Pending[]>();
    for (const pending of batch) {
      const waiting = byTopic.get(pending.topic);
      if (waiting) waiting.push(pending);
      else byTopic.set(pending.topic, [pending]);
    }
    for (const [topic, waiting] of byTopic) void this.produceTo(topic, waiting);
  }

  private async produceTo(topic: string, waiting: Pending[]): Promise<void> {
    this.inFlight++;
    try {
      await this.produceNow(topic, waiting);
    } finally {
      // What gathered meanwhile has waited long enough.
      if (--this.inFlight === 0 && this.queue.length > 0 && !this.closed) this.flush();
    }
  }

  private async produceNow(topic: string, waiting: Pending[]): Promise<void> {
    const current = this.producerFor(topic);
    const started = process.hrtime.bigint();
    try {
      const producer = await current;
      await producer.send({ topic, acks: -1, messages: waiting.map((pending) => pending.message) });
      this.options.observe?.(Number(process.hrtime.bigint() - started) / 1e9, waiting.length);
      waiting.forEach((pending) => pending.resolve());
    } catch (error) {
      waiting.forEach((pending) => pending.reject(error));
      const connected = await current.then(
        () => true,
        () => false,
      );
      if (this.producers.get(topic)?.producer === current && (needsNewProducer(error) || !connected))
        this.drop(topic, current, error);
    }
  }

  /** Forgets a broken (or never connected) producer: the next send to the topic opens a new one. */
  private drop(topic: string, broken: Promise<Producer>, error: unknown): void {
    this.logger.warn(`replacing the Kafka producer of ${topic} after: ${String(error)}`);
    this.producers.delete(topic);
    this.options.replaced?.();
    void broken
      .then(
        (p) => p.disconnect(),
        () => undefined,
      )
      .catch(() => undefined);
  }

  private closeIdle(): void {
    for (const [topic, { producer, lastUsed }] of this.producers) {
      if (performance.now() - lastUsed < IDLE_PRODUCER_MS) continue;
      this.producers.delete(topic);
      void producer
        .then(
          (p) => p.disconnect(),
          () => undefined,
        )
        .catch(() => undefined);
    }
  }
}
