import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Admin } from 'kafkajs';
import { AppConfig, kafkaConnection } from '@app/config';
import { createKafka } from '@app/kafka';
import { unavailableFor } from '@app/matrix';
import { gatewayMetrics, observeKafkaRequests } from '@app/observability';
import { BacklogEstimate } from './backlog';

/** Samples older than this many poll intervals are not acted on (Kafka out of reach: readiness says so instead). */
const STALE_AFTER_POLLS = 3;

/**
 * Backpressure from the real lag: every BACKPRESSURE_POLL_MS, reads the consumer group's committed offsets and the
 * end offsets of the commands topic (the send stage's input) and keeps a BacklogEstimate. A send whose command
 * would wait longer than SEND_TIMEOUT_MS is refused at once with 503 M_UNKNOWN and a Retry-After (and
 * `retry_after_ms`) of that wait, instead of a 503 after the client waited SEND_TIMEOUT_MS for nothing.
 */
@Injectable()
export class BacklogMonitor implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(BacklogMonitor.name);
  private readonly estimate = new BacklogEstimate();
  private admin?: Admin;
  private timer?: NodeJS.Timeout;
  private polling = false;
  private refusing = false;

  constructor(private readonly config: AppConfig) {}

  onModuleInit(): void {
    if (this.config.BACKPRESSURE_POLL_MS === 0) return;
    const kafka = createKafka(
      kafkaConnection(this.config),
      `${this.config.KAFKA_CLIENT_ID}-gateway-backlog`,
      observeKafkaRequests,
    );
    this.admin = kafka.admin();
    this.timer = setInterval(() => void this.poll(), this.config.BACKPRESSURE_POLL_MS);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.admin?.disconnect().catch(() => undefined);
  }

  /** Throws a retryable 503 with the expected wait when a new command would not be answered within SEND_TIMEOUT_MS. */
  admit(): void {
    if (!this.admin) return;
    const now = performance.now();
    if (now - this.estimate.sampledAt > STALE_AFTER_POLLS * this.config.BACKPRESSURE_POLL_MS) return;
    const waitMs = this.estimate.waitMs(now);
    if (waitMs <= this.config.SEND_TIMEOUT_MS) return;
    gatewayMetrics.backlogRefusals.inc();
    throw unavailableFor(
      `${this.estimate.backlog} events are waiting to be stored; retry with the same transaction ID later`,
      Math.min(waitMs, this.config.BACKPRESSURE_MAX_RETRY_AFTER_MS),
    );
  }

  private async poll(): Promise<void> {
    if (this.polling || !this.admin) return;
    this.polling = true;
    try {
      await this.admin.connect(); // at once when connected
      const topic = this.config.KAFKA_TOPIC_COMMANDS;
      const [ends, [group]] = await Promise.all([
        this.admin.fetchTopicOffsets(topic),
        this.admin.fetchOffsets({ groupId: this.config.KAFKA_CONSUMER_GROUP, topics: [topic] }),
      ]);
      const committedBy = new Map(group.partitions.map(({ partition, offset }) => [partition, Number(offset)]));
      let committed = 0;
      let end = 0;
      for (const { partition, high, low } of ends) {
        const at = committedBy.get(partition) ?? -1;
        committed += at >= 0 ? at : Number(low); // no commit yet: the consumer starts at the log start
        end += Number(high);
      }
      this.estimate.observe({ at: performance.now(), committed, end });
      const waitMs = this.estimate.waitMs(performance.now());
      gatewayMetrics.backlogRecords.set(this.estimate.backlog);
      gatewayMetrics.backlogWait.set(waitMs / 1000);
      const refusing = waitMs > this.config.SEND_TIMEOUT_MS;
      if (refusing !== this.refusing)
        this.logger.warn(
          refusing
            ? `refusing new sends: ${this.estimate.backlog} commands behind, about ${waitMs} ms to wait`
            : 'accepting new sends again: the backlog drains in time',
        );
      this.refusing = refusing;
    } catch (error) {
      this.logger.debug(`could not read the consumers' offsets: ${String(error)}`);
    } finally {
      this.polling = false;
    }
  }
}
