import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Admin, Kafka } from 'kafkajs';
import { AppConfig, kafkaConnection, topicSettings } from '@app/config';
import { decodeSendReply, pipelineTopics, SendCommand, SendReply } from '@app/contracts';
import {
  BatchingProducer,
  createKafka,
  ensureTopics,
  ReplyChannel,
  TopicLayoutError,
  untilConnected,
} from '@app/kafka';
import { kafkaMetrics, observeKafkaRequests, produceMetricsFor } from '@app/observability';

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
  private connected = false;
  private stopped = false;

  constructor(private readonly config: AppConfig) {
    const instance = `${hostname()
      .replace(/[^A-Za-z0-9-]/g, '-')
      .slice(0, 40)}-${process.pid}-${randomBytes(4).toString('hex')}`;
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
      `${config.KAFKA_REPLY_TOPIC_PREFIX}${instance}`,
      decodeSendReply,
      (error) => {
        this.logger.fatal(`${error.message}; exiting so that a new process takes over`);
        process.exit(1);
      },
    );
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
    const sent = this.producer.send(this.config.KAFKA_TOPIC_COMMANDS, { key, value: JSON.stringify(command) });
    // While Kafka is down the send can outlast the wait: whichever settles first decides, and neither promise is
    // left to reject unobserved (an unhandled rejection would end the process).
    sent.catch(() => undefined);
    reply.catch(() => undefined);
    try {
      await Promise.race([sent, reply]);
    } catch (error) {
      cancel();
      throw error;
    }
    return reply;
  }
}
