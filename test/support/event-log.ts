import '@app/kafka'; // before kafkajs: patches its read_committed filter
import { randomUUID } from 'node:crypto';
import { IHeaders, Kafka, logLevel } from 'kafkajs';
import { RoomEvent } from '@app/contracts';

export interface TopicRecord {
  key: string | null;
  offset: string;
  /** The broker's append time for the record (ms). */
  timestamp: string;
  value: string;
  headers: Record<string, string>;
  partition: number;
}

export interface LoggedEvent {
  event: RoomEvent;
  headers: Record<string, string>;
  partition: number;
  offset: string;
  timestamp: string;
}

const text = (headers: IHeaders | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k, String(v)]));

/**
 * Reads a topic from the start as a downstream reader would (read_committed) until `expected` matching records
 * arrived and the topic has been quiet for `settleMs`, so a test also sees records that should not be there.
 */
export async function readTopic(
  brokers: string,
  topic: string,
  expected: number,
  settleMs = 1500,
  timeoutMs = 60000,
  keep: (record: TopicRecord) => boolean = () => true,
): Promise<TopicRecord[]> {
  const kafka = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING, clientId: 'test-reader' });
  const consumer = kafka.consumer({ groupId: `test-reader-${randomUUID()}`, readUncommitted: false, maxWaitTimeInMs: 200 });
  const records: TopicRecord[] = [];
  let lastArrival = Date.now();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message, partition }) => {
      const record = {
        key: message.key?.toString() ?? null,
        offset: message.offset,
        timestamp: message.timestamp,
        value: message.value?.toString() ?? '',
        headers: text(message.headers),
        partition,
      };
      if (!keep(record)) return;
      records.push(record);
      lastArrival = Date.now();
    },
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && (records.length < expected || Date.now() - lastArrival < settleMs)) {
    await new Promise((done) => setTimeout(done, 100));
  }
  await consumer.disconnect();
  return records;
}

/** The event log as a reader sees it, optionally only some events. */
export async function readEventLog(
  brokers: string,
  topic: string,
  expected: number,
  settleMs = 1500,
  timeoutMs = 60000,
  keep: (event: RoomEvent) => boolean = () => true,
): Promise<LoggedEvent[]> {
  const parse = (record: TopicRecord): RoomEvent => JSON.parse(record.value) as RoomEvent;
  const records = await readTopic(brokers, topic, expected, settleMs, timeoutMs, (record) => keep(parse(record)));
  return records.map((record) => ({ event: parse(record), headers: record.headers, partition: record.partition, offset: record.offset, timestamp: record.timestamp }));
}
