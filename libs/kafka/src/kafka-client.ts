import { Logger } from '@nestjs/common';
import { Kafka, logLevel, LogEntry, Partitioners, Producer, ProducerConfig, RequestEvent, SASLOptions } from 'kafkajs';

/** kafkajs lines that only repeat something said better elsewhere. */
const QUIET_WARNINGS = [
  // Retries are bounded on purpose (a send must fail within the request's wait bound rather than retry forever);
  // idempotence still holds for the retries that happen.
  'Limiting retries for the idempotent producer',
  // The same failure as kafkajs' next line, "SASL ... authentication failed".
  'Response SaslAuthenticate',
];

/** kafkajs logs through Nest's logger, errors and warnings only: its info level is one line per request. */
function logCreator(): (entry: LogEntry) => void {
  const logger = new Logger('kafkajs');
  return ({ level, log }) => {
    const { message, error } = log;
    if (QUIET_WARNINGS.some((quiet) => message.startsWith(quiet))) return;
    const text = error ? `${message}: ${String(error)}` : message;
    if (level <= logLevel.ERROR) logger.error(text);
    else if (level === logLevel.WARN) logger.warn(text);
  };
}

/** Where Kafka is and how to authenticate; kafkajs' own shapes of `ssl` and `sasl`. */
export interface KafkaConnection {
  brokers: string[];
  ssl?: true | { ca?: string[]; cert?: string; key?: string };
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
}

/** Told of every request a client sends: its API (Produce, Fetch, EndTxn, …) and its size in bytes. */
export type RequestObserver = (api: string, bytes: number) => void;

/**
 * Every Kafka client of the apps and tools: the brokers, TLS and SASL, bounded retries; with `observeRequests`,
 * each producer, consumer and admin it makes reports its requests (for the cost of a send in metrics).
 */
export function createKafka(
  { brokers, ssl, sasl }: KafkaConnection,
  clientId: string,
  observeRequests?: RequestObserver,
): Kafka {
  const kafka = new Kafka({
    clientId,
    brokers,
    ssl,
    sasl: sasl as SASLOptions | undefined, // one object for the three mechanisms; kafkajs types one per mechanism
    logLevel: logLevel.WARN,
    logCreator,
    connectionTimeout: 3000,
    requestTimeout: 10000,
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 5 },
  });
  return observeRequests ? observed(kafka, observeRequests) : kafka;
}

function observed(kafka: Kafka, observe: RequestObserver): Kafka {
  const onRequest = ({ payload }: RequestEvent): void => observe(payload.apiName, payload.size);
  const view = Object.create(kafka) as Kafka;
  view.producer = (config) => {
    const producer = kafka.producer(config);
    producer.on(producer.events.REQUEST, onRequest);
    return producer;
  };
  view.consumer = (config) => {
    const consumer = kafka.consumer(config);
    consumer.on(consumer.events.REQUEST, onRequest);
    return consumer;
  };
  view.admin = (config) => {
    const admin = kafka.admin(config);
    admin.on(admin.events.REQUEST, onRequest);
    return admin;
  };
  return view;
}

/**
 * Every producer of the project: the Java client's murmur2 partitioner, so a command key maps to the same
 * partition whichever client produced it.
 */
export function createProducer<P = Producer>(
  kafka: { producer(config: ProducerConfig): P },
  options: ProducerConfig,
): P {
  return kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    ...options,
  });
}

/**
 * kafkajs computes some timer delays from stale clocks and Node 24 warns about the negative value
 * (TimeoutNegativeWarning; Node clamps it to 1 ms, which is what kafkajs means). Hide that one warning only.
 */
export function silenceKafkajsTimerWarnings(): void {
  const listeners = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    if (warning.name === 'TimeoutNegativeWarning') return;
    for (const listener of listeners) listener(warning);
  });
}
