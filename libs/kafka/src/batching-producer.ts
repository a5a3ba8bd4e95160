import { Kafka, Message, Producer } from 'kafkajs';
import { createProducer } from './kafka-client';

interface Pending {
  topic: string;
  message: Message;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Coalesces concurrent sends into one produce request: waiting on one produce per HTTP request is kafkajs'
 * known bottleneck. Idempotent producer, acks=all, a short linger and a bounded batch.
 */
export class BatchingProducer {
  private readonly producer: Producer;
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    kafka: Kafka,
    private readonly lingerMs: number,
    private readonly maxBatch: number,
    /** Told the duration and size of each produce request. */
    private readonly observe: (seconds: number, records: number) => void = () => undefined,
  ) {
    this.producer = createProducer(kafka, { idempotent: true, maxInFlightRequests: 5 });
  }

  async connect(): Promise<void> {
    await this.producer.connect();
  }

  async disconnect(): Promise<void> {
    this.flush();
    await this.producer.disconnect();
  }

  send(topic: string, message: Message): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ topic, message, resolve, reject });
      if (this.queue.length >= this.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.lingerMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue.splice(0, this.maxBatch);
    if (this.queue.length > 0) this.timer = setTimeout(() => this.flush(), this.lingerMs);
    if (batch.length === 0) return;
    const byTopic = new Map<string, Pending[]>();
    for (const pending of batch) {
      const waiting = byTopic.get(pending.topic);
      if (waiting) waiting.push(pending);
      else byTopic.set(pending.topic, [pending]);
    }
    // One produce call per topic: a topic that is gone (a stopped gateway's reply topic) fails only its own sends.
    for (const [topic, waiting] of byTopic) {
      const messages = waiting.map((pending) => pending.message);
      const started = process.hrtime.bigint();
      this.producer.send({ topic, acks: -1, messages }).then(
        () => {
          this.observe(Number(process.hrtime.bigint() - started) / 1e9, messages.length);
          waiting.forEach((pending) => pending.resolve());
        },
        (error: unknown) => waiting.forEach((pending) => pending.reject(error)),
      );
    }
  }
}
