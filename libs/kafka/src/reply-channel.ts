import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { Admin, Consumer, ConsumerConfig, ConsumerEvents } from 'kafkajs';
import { ConsumerRevival } from './retry';
import { durabilityEntries } from './topics';

export class ReplyTimeout extends Error {}

/** The reply reader's group session: also how long after losing Kafka the gateway stops being ready. */
const REPLY_SESSION_TIMEOUT_MS = 10_000;

/**
 * The reply topic of a new gateway process: `<prefix><host>-<pid>-<8 hex>`, unique per process. The shape is what
 * lets the orphan collector tell reply topics from any other topic that happens to share the prefix.
 */
export function newReplyTopic(prefix: string, host: string, pid: number): string {
  return `${prefix}${host.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 40)}-${pid}-${randomBytes(4).toString('hex')}`;
}

/** Whether `topic` is a reply topic made by newReplyTopic with `prefix`. */
export function isReplyTopic(prefix: string, topic: string): boolean {
  return topic.startsWith(prefix) && /^[A-Za-z0-9-]{0,40}-\d+-[0-9a-f]{8}$/.test(topic.slice(prefix.length));
}

/** The consumer group that reads a reply topic: it has members exactly while its gateway reads its replies. */
export const replyReaderGroup = (topic: string): string => `${topic}.reader`;

/** What the channel uses of a kafkajs consumer. */
type ReplyReader = Pick<Consumer, 'on' | 'connect' | 'subscribe' | 'run' | 'disconnect'> & {
  events: Pick<ConsumerEvents, 'GROUP_JOIN' | 'HEARTBEAT' | 'CRASH'>;
};

/** Where the channel gets its reader: a kafkajs `Kafka` (the unit tests give a fake one). */
export interface ReplyReaderSource {
  consumer(config: ConsumerConfig): ReplyReader;
}

interface Waiter<T> {
  resolve: (reply: T) => void;
  timer: NodeJS.Timeout;
}

/**
 * The receiving end of request-reply over Kafka for one process: a topic of its own, so each gateway instance
 * reads only its own replies and no reply is lost to a consumer-group rebalance (the flaw of NestJS' built-in
 * Kafka request-response, nestjs/nest#2984). Replies are matched to waiters by correlation id.
 */
export class ReplyChannel<T extends { correlation_id: string }> {
  private readonly waiters = new Map<string, Waiter<T>>();
  private readonly consumer: ReplyReader;
  private readonly revival: ConsumerRevival;
  private ready = false;
  private lastHeartbeat = -Infinity; // performance.now() of the last heartbeat
  /** Told each reply that finds no waiter (it came after its wait timed out, or twice). */
  unmatched?: (reply: T) => void;

  constructor(
    kafka: ReplyReaderSource,
    private readonly admin: Pick<Admin, 'createTopics' | 'deleteTopics' | 'deleteGroups'>,
    readonly topic: string,
    private readonly decode: (value: Buffer | null) => T | null,
    /** Called when the reader stopped for good (kafkajs does not restart it after a non-retriable error). */
    private readonly onFatal: (error: Error) => void,
    private readonly retentionMs = 3_600_000,
  ) {
    this.consumer = kafka.consumer({
      groupId: replyReaderGroup(topic),
      maxWaitTimeInMs: 500,
      sessionTimeout: REPLY_SESSION_TIMEOUT_MS,
      heartbeatInterval: REPLY_SESSION_TIMEOUT_MS / 5,
      retry: { retries: 10 },
    });
    this.revival = new ConsumerRevival(
      new Logger(`ReplyChannel ${topic}`),
      () => this.read(),
      (error) => this.onFatal(new Error(`the reply reader stopped for good: ${error.message}`)),
    );
    this.consumer.on(this.consumer.events.GROUP_JOIN, () => {
      this.ready = true;
      this.lastHeartbeat = performance.now();
      this.revival.joined();
    });
    this.consumer.on(this.consumer.events.HEARTBEAT, () => (this.lastHeartbeat = performance.now()));
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      this.ready = false;
      if (!payload.restart) this.revival.stopped(payload.error);
    });
  }

  /** True once replies addressed to this channel will be seen, and while Kafka still hears from it. */
  get isReady(): boolean {
    return this.ready && performance.now() - this.lastHeartbeat < REPLY_SESSION_TIMEOUT_MS;
  }

  /** Creates this channel's topic (replicated like the pipeline's topics) and starts reading it. */
  async start(replicationFactor: number): Promise<void> {
    // createTopics answers false, not an error, when a previous attempt already created it.
    await this.admin.createTopics({
      topics: [
        {
          topic: this.topic,
          numPartitions: 1,
          replicationFactor,
          configEntries: [
            { name: 'retention.ms', value: String(this.retentionMs) },
            ...durabilityEntries(replicationFactor),
          ],
        },
      ],
      waitForLeaders: true,
    });
    const joined = new Promise<void>((resolve) => this.consumer.on(this.consumer.events.GROUP_JOIN, () => resolve()));
    await this.read();
    await joined;
  }

  private async read(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await this.consumer.run({
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) {
          const reply = this.decode(message.value);
          if (reply) this.settle(reply);
        }
      },
    });
  }

  /** Waits for the reply to `correlationId`, at most `timeoutMs`. Register before sending the request. */
  wait(correlationId: string, timeoutMs: number): { reply: Promise<T>; cancel: () => void } {
    let cancel = (): void => undefined;
    const reply = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(correlationId);
        reject(new ReplyTimeout(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(correlationId, { resolve, timer });
      cancel = () => {
        clearTimeout(timer);
        this.waiters.delete(correlationId);
      };
    });
    return { reply, cancel };
  }

  private settle(reply: T): void {
    const waiter = this.waiters.get(reply.correlation_id);
    if (!waiter) return this.unmatched?.(reply); // timed out already, or a duplicate reply
    clearTimeout(waiter.timer);
    this.waiters.delete(reply.correlation_id);
    waiter.resolve(reply);
  }

  /** Stops reading and removes the topic: nobody else will ever read it. */
  async stop(): Promise<void> {
    this.ready = false;
    this.revival.cancel();
    await this.consumer.disconnect();
    await this.admin.deleteTopics({ topics: [this.topic], timeout: 5000 }).catch(() => undefined);
    await this.admin.deleteGroups([replyReaderGroup(this.topic)]).catch(() => undefined);
  }
}
