import { Logger } from '@nestjs/common';
import { Kafka, Message, Producer } from 'kafkajs';
import { createProducer } from './kafka-client';
import { recordBytes } from './record-bytes';

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
 * Errors after which an idempotent producer's sequence numbers can no longer be trusted: kafkajs rolls a failed
 * request's sequence back even when later requests to the partition are in flight, and from then on the broker
 * answers OUT_OF_ORDER_SEQUENCE_NUMBER to everything. Only a new producer (a new producer id) gets out of that.
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
]);

/** Whether the producer that failed with `error` must be replaced (kafkajs nests the cause in retry errors). */
export function needsNewProducer(error: unknown): boolean {
  for (let cause = error as { type?: string; originalError?: unknown; cause?: unknown } | undefined, depth = 0; cause && depth < 5; depth++) {
    if (typeof cause.type === 'string' && FATAL_PRODUCER_ERRORS.has(cause.type)) return true;
    cause = (cause.originalError ?? cause.cause) as typeof cause;
  }
  return false;
}

/**
 * Coalesces concurrent sends into one produce request: waiting on one produce per HTTP request is kafkajs'
 * known bottleneck. Idempotent producer, acks=all, a short linger, and a request bounded in records and bytes.
 * A produce that fails fails only its own sends; one that leaves the producer broken also replaces the producer,
 * so the next sends go through.
 */
export class BatchingProducer {
  private readonly logger: Logger;
  private producer: Promise<Producer> | null = null;
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly options: BatchingProducerOptions,
  ) {
    this.logger = new Logger(options.name);
  }

  async connect(): Promise<void> {
    this.producer ??= this.open();
    await this.producer;
  }

  async disconnect(): Promise<void> {
    this.flush();
    this.closed = true;
    const producer = this.producer;
    this.producer = null;
    await producer?.then((p) => p.disconnect(), () => undefined);
  }

  send(topic: string, message: Message): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.options.name} is stopped`));
    return new Promise((resolve, reject) => {
      const bytes = recordBytes(message);
      this.queue.push({ topic, message, bytes, resolve, reject });
      this.queuedBytes += bytes;
      if (this.queue.length >= this.options.maxBatch || this.queuedBytes >= this.options.maxBatchBytes) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.options.lingerMs);
    });
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
    if (this.queue.length > 0) this.timer = setTimeout(() => this.flush(), this.options.lingerMs);
  }

  /** The head of the queue, up to the bounds (at least one send, however large). */
  private take(): Pending[] {
    let count = 0;
    let bytes = 0;
    while (count < this.queue.length && count < this.options.maxBatch && (count === 0 || bytes + this.queue[count].bytes <= this.options.maxBatchBytes)) {
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
    // One produce call per topic: a topic that is gone (a stopped gateway's reply topic) fails only its own sends.
    for (const [topic, waiting] of byTopic) void this.produceTo(topic, waiting);
  }

  private async produceTo(topic: string, waiting: Pending[]): Promise<void> {
    const current = (this.producer ??= this.open());
    const started = process.hrtime.bigint();
    try {
      const producer = await current;
      await producer.send({ topic, acks: -1, messages: waiting.map((pending) => pending.message) });
      this.options.observe?.(Number(process.hrtime.bigint() - started) / 1e9, waiting.length);
      waiting.forEach((pending) => pending.resolve());
    } catch (error) {
      waiting.forEach((pending) => pending.reject(error));
      if (this.producer === current && (needsNewProducer(error) || !(await current.then(() => true, () => false)))) {
        this.replace(current, error);
      }
    }
  }

  /** Swaps a broken (or never connected) producer for a new one; sends from now on go to the new one. */
  private replace(broken: Promise<Producer>, error: unknown): void {
    this.logger.warn(`replacing the Kafka producer after: ${String(error)}`);
    this.producer = this.open();
    this.producer.catch(() => undefined); // the sends that await it see the error
    this.options.replaced?.();
    void broken.then((p) => p.disconnect(), () => undefined).catch(() => undefined);
  }
}
