import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { hostname } from 'node:os';
import { Admin, Kafka } from 'kafkajs';
import { AppConfig, kafkaConnection, topicSettings } from '@app/config';
import { decodeSendReply, pipelineTopics, SendCommand, SendReply } from '@app/contracts';
import {
  BatchingProducer,
  createKafka,
  ensureTopics,
  newReplyTopic,
  OrphanReplyTopics,
  ReplyChannel,
  ReplyTimeout,
  TopicLayoutError,
  untilConnected,
} from '@app/kafka';
import {
  endSpan,
  gatewayMetrics,
  kafkaMetrics,
  messagingAttributes,
  observeKafkaRequests,
  produceMetricsFor,
  SpanKind,
  startSpan,
  traceHeaders,
} from '@app/observability';

/**
 * A Kafka request-reply client: a command goes out on the commands topic through a batching producer, and its
 * reply comes back on this instance's own reply topic, matched by correlation id. Connects in the background: the
 * gateway is live at once, ready once connected.
 */
@Injectable()
export class RequestReplyClient implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RequestReplyClient.name);
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly producer: BatchingProducer;
  private readonly replies: ReplyChannel<SendReply>;
  private readonly orphans?: OrphanReplyTopics;
  private connected = false;
  private stopped = false;
  /** Requests that timed out, by correlation id: the transaction each stands for. */
  private readonly timedOut = new Map<string, string>();
  /** Outcomes (200) of transactions whose reply came after their request timed out, for their retries. */
  private readonly lateOutcomes = new Map<string, { event_id: string }>();

  constructor(private readonly config: AppConfig) {
    this.kafka = createKafka(kafkaConnection(config), `${config.KAFKA_CLIENT_ID}-gateway`, observeKafkaRequests);
    this.admin = this.kafka.admin();
    this.producer = new BatchingProducer(this.kafka, {
      name: 'CommandProducer',
      lingerMs: config.PRODUCER_LINGER_MS,
      maxBatch: config.PRODUCER_MAX_BATCH,
      maxBatchBytes: config.KAFKA_MAX_REQUEST_BYTES,
      ...produceMetricsFor('gateway'),
    });
    // A gateway that can no longer read replies would answer nothing but 503: end it, and its supervisor starts anew.
    this.replies = new ReplyChannel(
      this.kafka,
      this.admin,
      newReplyTopic(config.KAFKA_REPLY_TOPIC_PREFIX, hostname(), process.pid),
      decodeSendReply,
      (error) => {
        this.logger.fatal(`${error.message}; exiting so that a new process takes over`);
        process.exit(1);
      },
    );
    if (config.REPLY_TOPIC_ORPHAN_MS > 0)
      this.orphans = new OrphanReplyTopics(this.admin, {
        prefix: config.KAFKA_REPLY_TOPIC_PREFIX,
        own: this.replies.topic,
        orphanAfterMs: config.REPLY_TOPIC_ORPHAN_MS,
        everyMs: Math.min(60_000, Math.max(1000, config.REPLY_TOPIC_ORPHAN_MS / 4)),
        removed: () => gatewayMetrics.orphanReplyTopicsRemoved.inc(),
      });
    this.replies.unmatched = (reply) => {
      const transaction = this.timedOut.get(reply.correlation_id);
      if (transaction === undefined) return;
      this.timedOut.delete(reply.correlation_id);
      if (reply.status === 200) remember(this.lateOutcomes, transaction, reply.body as { event_id: string });
    };
  }

  onModuleInit(): void {
    untilConnected(
      this.logger,
      'gateway',
      async () => {
        await this.admin.connect();
        const { replicationFactor, warnings } = await ensureTopics(
          this.admin,
          pipelineTopics(topicSettings(this.config)),
          this.config.KAFKA_REPLICATION_FACTOR,
        );
        for (const { topic, problem } of warnings) kafkaMetrics.topicWarnings.set({ topic, problem }, 1);
        await this.producer.connect(this.config.KAFKA_TOPIC_COMMANDS);
        await this.replies.start(replicationFactor);
      },
      (error) => error instanceof TopicLayoutError,
      () => this.stopped,
    ).then(
      () => {
        this.connected = !this.stopped;
        this.logger.log(`replies arrive on ${this.replies.topic}`);
        if (this.connected) this.orphans?.start();
      },
      (error: unknown) => {
        this.logger.fatal(String(error));
        process.exit(1);
      },
    );
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    this.connected = false;
    this.orphans?.stop();
    await this.producer.disconnect().catch(() => undefined);
    await this.replies.stop().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
  }

  get isReady(): boolean {
    return this.connected && this.replies.isReady;
  }

  get replyTopic(): string {
    return this.replies.topic;
  }

  /** Publishes the command and resolves with its reply; rejects with ReplyTimeout after `timeoutMs`. */
  async request(key: string, command: SendCommand, timeoutMs: number): Promise<SendReply> {
    const { reply, cancel } = this.replies.wait(command.correlation_id, timeoutMs);
    const topic = this.config.KAFKA_TOPIC_COMMANDS;
    // A child of the HTTP request's span; the consumer continues the trace from the command's headers.
    const span = startSpan(`publish ${topic}`, SpanKind.PRODUCER, { attributes: messagingAttributes(topic) });
    const value = JSON.stringify(command);
    const sent = this.producer.send(topic, span ? { key, value, headers: traceHeaders(span) } : { key, value });
    if (span)
      sent.then(
        () => endSpan(span),
        (error: unknown) => endSpan(span, error),
      );
    // While Kafka is down the send can outlast the wait: whichever settles first decides, and neither promise is
    // left to reject unobserved (an unhandled rejection would end the process).
    sent.catch(() => undefined);
    reply.catch(() => undefined);
    try {
      await Promise.race([sent, reply]);
      return await reply;
    } catch (error) {
      cancel();
      if (error instanceof ReplyTimeout) remember(this.timedOut, command.correlation_id, transactionOf(key, command));
      throw error;
    }
  }

  /**
   * The event of a transaction whose reply reached this gateway after its request had timed out: its retry is
   * answered at once, whatever the backlog (the event is in the log; the reply is sent after the commit).
   */
  lateOutcome(key: string, command: Pick<SendCommand, 'room_id' | 'type'>): { event_id: string } | undefined {
    return this.lateOutcomes.get(transactionOf(key, command));
  }
}

/** Late outcomes and timed-out requests each remembered per gateway: bounded, the oldest forgotten first. */
const REMEMBERED_LATE = 10_000;

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > REMEMBERED_LATE) map.delete(map.keys().next().value!);
}

/** A transaction is (scope, room, event type, txnId): the command key holds the scope and the txnId. */
function transactionOf(key: string, { room_id, type }: Pick<SendCommand, 'room_id' | 'type'>): string {
  return `${key}\u0000${room_id}\u0000${type}`;
}
