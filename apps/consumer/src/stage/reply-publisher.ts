import { Injectable } from '@nestjs/common';
import { Kafka } from 'kafkajs';
import { AppConfig } from '@app/config';
import { SendReply } from '@app/contracts';
import { BatchingProducer } from '@app/kafka';
import {
  consumerMetrics,
  Context,
  endSpan,
  messagingAttributes,
  produceMetricsFor,
  SpanKind,
  startSpan,
  traceHeaders,
} from '@app/observability';

/** How long replies to a deleted reply topic fail without asking the broker again. */
const REPLY_TOPIC_GONE_MS = 10 * 60_000;

/** Sends both stages' replies to the gateways' reply topics, after each batch commits: one producer for both. */
@Injectable()
export class ReplyPublisher {
  private readonly producer: BatchingProducer;

  constructor(kafka: Kafka, config: AppConfig) {
    this.producer = new BatchingProducer(kafka, {
      name: 'ReplyProducer',
      lingerMs: config.PRODUCER_LINGER_MS,
      maxBatch: config.PRODUCER_MAX_BATCH,
      maxBatchBytes: config.KAFKA_MAX_REQUEST_BYTES,
      // A reply topic never comes back: it is named after a gateway process that stopped.
      goneTopicMs: REPLY_TOPIC_GONE_MS,
      ...produceMetricsFor('consumer-replies'),
    });
  }

  /** A reply that cannot be delivered (its gateway is gone) is not retried: the client retries the transaction. */
  readonly send = (to: string, reply: SendReply, trace?: Context): void => {
    const value = JSON.stringify(reply);
    // One span name for every reply topic (they are per gateway process); the topic is an attribute.
    const span =
      trace && startSpan('publish reply', SpanKind.PRODUCER, { parent: trace, attributes: messagingAttributes(to) });
    this.producer.send(to, span ? { value, headers: traceHeaders(span) } : { value }).then(
      () => endSpan(span),
      (error: unknown) => {
        consumerMetrics.repliesUndeliverable.inc();
        endSpan(span, error);
      },
    );
  };

  async disconnect(): Promise<void> {
    await this.producer.disconnect();
  }
}
