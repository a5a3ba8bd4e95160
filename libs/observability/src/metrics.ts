import { Counter, Gauge, Histogram, collectDefaultMetrics, Registry } from 'prom-client';

/**
 * The Prometheus metrics of both apps, in one registry. Labels are bounded: routes, status codes, errcodes,
 * stages and partition numbers, never user IDs, room IDs or txnIds.
 */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

const LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];

export const gatewayMetrics = {
  requests: new Counter({
    name: 'matrix_gateway_requests_total',
    help: 'HTTP requests answered, by route, status and Matrix errcode',
    labelNames: ['route', 'status', 'errcode'] as const,
    registers: [registry],
  }),
  sendLatency: new Histogram({
    name: 'matrix_gateway_send_duration_seconds',
    help: 'End-to-end time of a send request, from arrival to answer',
    labelNames: ['status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  }),
  inFlight: new Gauge({
    name: 'matrix_gateway_requests_in_flight',
    help: 'Send requests waiting for their outcome',
    registers: [registry],
  }),
  inFlightBytes: new Gauge({
    name: 'matrix_gateway_in_flight_bytes_estimate',
    help: 'Estimated heap held by send requests waiting for their outcome (parsed content and raw bytes); bounded by MAX_IN_FLIGHT_BYTES',
    registers: [registry],
  }),
  replyTimeouts: new Counter({
    name: 'matrix_gateway_reply_timeouts_total',
    help: 'Send requests answered 503 because no reply came within SEND_TIMEOUT_MS',
    registers: [registry],
  }),
  backlogRefusals: new Counter({
    name: 'matrix_gateway_backlog_refusals_total',
    help: "Sends answered 503 at once because the consumer group's backlog meant no reply within SEND_TIMEOUT_MS",
    registers: [registry],
  }),
  backlogRecords: new Gauge({
    name: 'matrix_gateway_backlog_records',
    help: 'Commands the consumer group has not yet committed (end minus committed offsets), as this gateway last saw',
    registers: [registry],
  }),
  backlogWait: new Gauge({
    name: 'matrix_gateway_backlog_wait_seconds',
    help: 'Expected wait of a new command: time the consumers have been stalled plus backlog over their drain rate',
    registers: [registry],
  }),
  orphanReplyTopicsRemoved: new Counter({
    name: 'matrix_gateway_orphan_reply_topics_removed_total',
    help: 'Reply topics of gateways gone without a graceful stop, removed after REPLY_TOPIC_ORPHAN_MS unread',
    registers: [registry],
  }),
  lateRepliesAnswered: new Counter({
    name: 'matrix_gateway_late_replies_answered_total',
    help: 'Retries answered at once from a reply that came after its request had timed out',
    registers: [registry],
  }),
};

/** Metrics of the Kafka side that both apps report. */
export const kafkaMetrics = {
  requests: new Counter({
    name: 'matrix_kafka_requests_total',
    help: 'Requests sent to Kafka, by API (Produce, Fetch, AddPartitionsToTxn, EndTxn, …): the Kafka cost of a send',
    labelNames: ['api'] as const,
    registers: [registry],
  }),
  requestBytes: new Counter({
    name: 'matrix_kafka_request_bytes_total',
    help: 'Bytes of the requests sent to Kafka, by API',
    labelNames: ['api'] as const,
    registers: [registry],
  }),
  produceLatency: new Histogram({
    name: 'matrix_kafka_produce_duration_seconds',
    help: 'Time of one coalesced produce request to Kafka',
    labelNames: ['client'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  }),
  produceBatch: new Histogram({
    name: 'matrix_kafka_produce_batch_size',
    help: 'Records in one coalesced produce request',
    labelNames: ['client'] as const,
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [registry],
  }),
  producerReplacements: new Counter({
    name: 'matrix_kafka_producer_replacements_total',
    help: 'Producers replaced after an error that left them unable to produce (sequence out of order, fenced, too large)',
    labelNames: ['client'] as const,
    registers: [registry],
  }),
  topicWarnings: new Gauge({
    name: 'matrix_kafka_topic_warnings',
    help: 'Existing topics that risk data: 1 per topic and problem (finite_retention of the event log, low_replication)',
    labelNames: ['topic', 'problem'] as const,
    registers: [registry],
  }),
};

const readinessSources = new Map<string, () => boolean>();

/** Where `matrix_ready` reads a component's readiness when scraped: the same answer as its /health/ready. */
export function reportReadiness(component: string, isReady: () => boolean): void {
  readinessSources.set(component, isReady);
}

/** Readiness as a series, so that an alert sees a component that stays live but not ready. */
export const readinessMetric = new Gauge({
  name: 'matrix_ready',
  help: '1 when the component (gateway, or a consumer stage: send, annotation) is ready, else 0',
  labelNames: ['component'] as const,
  registers: [registry],
  collect() {
    for (const [component, isReady] of readinessSources) this.set({ component }, isReady() ? 1 : 0);
  },
});

/** What the state stores of one stage hold: entries, and bytes on disk. */
export interface StateSize {
  entries: number;
  diskBytes: number;
}

let stateSource: () => Promise<Record<string, StateSize>> = async () => ({});

/** Where the state gauges read their values when scraped: per stage, the entries and disk bytes of its stores. */
export function reportStateSize(source: () => Promise<Record<string, StateSize>>): void {
  stateSource = source;
}

export const consumerMetrics = {
  batchSize: new Histogram({
    name: 'matrix_consumer_batch_size',
    help: 'Records processed in one transaction',
    labelNames: ['stage'] as const,
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000],
    registers: [registry],
  }),
  batchDuration: new Histogram({
    name: 'matrix_consumer_batch_duration_seconds',
    help: 'Time to process and commit one batch',
    labelNames: ['stage'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  }),
  transactions: new Counter({
    name: 'matrix_consumer_transactions_total',
    help: 'Kafka transactions, by outcome (committed or aborted)',
    labelNames: ['stage', 'outcome'] as const,
    registers: [registry],
  }),
  recordsWritten: new Counter({
    name: 'matrix_consumer_records_written_total',
    help: 'Records written in committed transactions (events, changelog, hand-overs, dead letters), replies aside',
    labelNames: ['stage'] as const,
    registers: [registry],
  }),
  events: new Counter({
    name: 'matrix_consumer_events_appended_total',
    help: 'Events appended to the event log',
    labelNames: ['stage'] as const,
    registers: [registry],
  }),
  dedupHits: new Counter({
    name: 'matrix_consumer_dedup_hits_total',
    help: 'Commands answered from the dedup state (retries, duplicates)',
    registers: [registry],
  }),
  annotationRejections: new Counter({
    name: 'matrix_consumer_annotation_rejections_total',
    help: 'Annotations rejected as duplicates',
    registers: [registry],
  }),
  deadLetters: new Counter({
    name: 'matrix_consumer_dead_letters_total',
    help: 'Records set aside as undecodable',
    labelNames: ['stage'] as const,
    registers: [registry],
  }),
  stateEntries: new Gauge({
    name: 'matrix_consumer_state_entries',
    help: 'Entries in the dedup and annotation state held by this process',
    labelNames: ['stage'] as const,
    registers: [registry],
    async collect() {
      for (const [stage, { entries }] of Object.entries(await stateSource())) this.set({ stage }, entries);
    },
  }),
  stateDiskBytes: new Gauge({
    name: 'matrix_consumer_state_disk_bytes',
    help: 'Bytes the state stores of this process take on disk (STATE_DIR), free pages excluded',
    labelNames: ['stage'] as const,
    registers: [registry],
    async collect() {
      for (const [stage, { diskBytes }] of Object.entries(await stateSource())) this.set({ stage }, diskBytes);
    },
  }),
  stateDiskBudget: new Gauge({
    name: 'matrix_consumer_state_disk_budget_bytes',
    help: 'STATE_DISK_BUDGET_BYTES: past it, new transactions are refused with a retryable 503',
    registers: [registry],
  }),
  stateCacheBudget: new Gauge({
    name: 'matrix_consumer_state_cache_budget_bytes',
    help: 'STATE_CACHE_BYTES: the most the state stores cache in memory (SQLite page caches, off the V8 heap)',
    registers: [registry],
  }),
  restores: new Counter({
    name: 'matrix_consumer_restores_total',
    help: 'Partition restores: partial (from the local checkpoint) or full (from the changelog start)',
    labelNames: ['stage', 'kind'] as const,
    registers: [registry],
  }),
  stateBudget: new Gauge({
    name: 'matrix_consumer_state_budget_entries',
    help: 'STATE_MAX_ENTRIES: past it, new transactions are refused with a retryable 503',
    registers: [registry],
  }),
  stateRefusals: new Counter({
    name: 'matrix_consumer_state_refusals_total',
    help: 'Commands refused with a retryable 503 because the state budget was spent',
    labelNames: ['stage'] as const,
    registers: [registry],
  }),
  expiredCommands: new Counter({
    name: 'matrix_consumer_expired_commands_total',
    help: 'Commands older than the dedup window, dead-lettered as expired and never appended',
    labelNames: ['stage'] as const,
    registers: [registry],
  }),
  restoreDuration: new Histogram({
    name: 'matrix_consumer_restore_duration_seconds',
    help: 'Time to restore the state of newly assigned partitions',
    labelNames: ['stage'] as const,
    buckets: [0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [registry],
  }),
  restoredRecords: new Counter({
    name: 'matrix_consumer_restored_records_total',
    help: 'Changelog records replayed while restoring, by kind of restore (partial: from the checkpoint; full)',
    labelNames: ['stage', 'kind'] as const,
    registers: [registry],
  }),
  lag: new Gauge({
    name: 'matrix_consumer_lag',
    help: 'Records behind the end of the partition, as of the last batch',
    labelNames: ['stage', 'partition'] as const,
    registers: [registry],
  }),
  repliesUndeliverable: new Counter({
    name: 'matrix_consumer_replies_undeliverable_total',
    help: 'Replies that could not be sent, mostly because their reply topic is gone (a gateway that stopped); their clients retry',
    registers: [registry],
  }),
};

/** The callbacks of a BatchingProducer that feed the produce metrics, labelled with the client. */
export function produceMetricsFor(client: string): {
  observe(seconds: number, records: number): void;
  replaced(): void;
} {
  return {
    observe: (seconds, records) => {
      kafkaMetrics.produceLatency.observe({ client }, seconds);
      kafkaMetrics.produceBatch.observe({ client }, records);
    },
    replaced: () => kafkaMetrics.producerReplacements.inc({ client }),
  };
}

/** Counts each Kafka request of a client made by `createKafka(…, observeKafkaRequests)`. */
export function observeKafkaRequests(api: string, bytes: number): void {
  kafkaMetrics.requests.inc({ api });
  kafkaMetrics.requestBytes.inc({ api }, bytes);
}
