import '@app/kafka'; // before kafkajs: patches its read_committed filter
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
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

export interface ReadOptions<T> {
  /** Fails the read if the end is not reached by then (an open transaction holds read_committed readers back). */
  timeoutMs?: number;
  keep?: (item: T) => boolean;
  /**
   * For records written after the caller's answer (replies, dead letters of a poison record): read again, to the
   * new end, until at least this many were kept.
   */
  atLeast?: number;
}

const text = (headers: IHeaders | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k, String(v)]));

/**
 * Reads a whole topic as a downstream reader would (read_committed), exactly: the end offsets are taken first,
 * and every partition is read until its position (control records included) reaches them. A read_committed reader
 * cannot pass the last stable offset, so reaching the end offsets also proves no transaction below them is still
 * open. Records are counted by (partition, offset), so the reader's own re-reads never look like duplicates.
 */
export async function readTopic(
  brokers: string,
  topic: string,
  options: ReadOptions<TopicRecord> = {},
): Promise<TopicRecord[]> {
  const deadline = Date.now() + (options.timeoutMs ?? 60000);
  for (;;) {
    const records = await readToEnd(brokers, topic, options.keep, deadline);
    if (records.length >= (options.atLeast ?? 0)) return records;
    if (Date.now() > deadline)
      throw new Error(`${topic}: ${records.length} records, expected at least ${options.atLeast}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function readToEnd(
  brokers: string,
  topic: string,
  keep: ((record: TopicRecord) => boolean) | undefined,
  deadline: number,
): Promise<TopicRecord[]> {
  const kafka = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING, clientId: 'test-reader' });
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
  await admin.disconnect();
  const reached = new Map([...ends.keys()].map((partition) => [partition, 0n]));
  const records = new Map<string, TopicRecord>();
  const done = (): boolean => [...ends].every(([partition, end]) => reached.get(partition)! >= end);
  if (done()) return [];

  const consumer = kafka.consumer({
    groupId: `test-reader-${randomUUID()}`,
    readUncommitted: false,
    maxWaitTimeInMs: 200,
  });
  // Emitted for every batch, also one that held only transaction markers or aborted records. A batch with no record
  // at or past the fetch position (firstOffset null) reports the high watermark as its last offset, whatever it
  // delivered: it says nothing about how far the reader got.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.firstOffset === null) return;
    const next = BigInt(payload.lastOffset) + 1n;
    if (next > (reached.get(payload.partition) ?? 0n)) reached.set(payload.partition, next);
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message, partition }) => {
      if (BigInt(message.offset) >= ends.get(partition)!) return;
      const record = {
        key: message.key?.toString() ?? null,
        offset: message.offset,
        timestamp: message.timestamp,
        value: message.value?.toString() ?? '',
        headers: text(message.headers),
        partition,
      };
      if (keep && !keep(record)) return;
      records.set(`${partition}:${message.offset}`, record);
    },
  });
  try {
    while (!done()) {
      if (Date.now() > deadline) {
        const behind = [...ends]
          .filter(([p, end]) => reached.get(p)! < end)
          .map(([p, end]) => `${p}: ${reached.get(p)}/${end}`);
        throw new Error(`${topic} not read to its end in time (partition: position/end ${behind.join(', ')})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await consumer.disconnect();
  }
  return [...records.values()];
}

/** The event log as a reader sees it, exactly up to its end offsets at the call, optionally only some events. */
export async function readEventLog(
  brokers: string,
  topic: string,
  options: ReadOptions<RoomEvent> = {},
): Promise<LoggedEvent[]> {
  const parse = (record: TopicRecord): RoomEvent => JSON.parse(record.value) as RoomEvent;
  const keep = options.keep;
  const records = await readTopic(brokers, topic, { ...options, keep: keep && ((record) => keep(parse(record))) });
  return records.map((record) => ({
    event: parse(record),
    headers: record.headers,
    partition: record.partition,
    offset: record.offset,
    timestamp: record.timestamp,
  }));
}

const LAUNCHER_DIR = resolve(__dirname, '../../../tools/kafka-local');

/**
 * A topic as the Java client reads it (read_committed, up to the end offsets it reports: the last stable offsets),
 * through tools/kafka-local/ReadCommitted.java and the broker's own jars: the reference for kafkajs.
 */
export async function readTopicJava(
  brokers: string,
  topic: string,
): Promise<{ partition: number; offset: string; value: string }[]> {
  const run = promisify(execFile);
  await run('bash', [resolve(LAUNCHER_DIR, 'kafka-local.sh'), 'resolve'], { maxBuffer: 1 << 20 });
  const lib = process.env.KAFKA_LOCAL_LIB ?? resolve(LAUNCHER_DIR, '../../.cache/kafka-local/lib');
  const { stdout } = await run(
    'java',
    [
      '-cp',
      `${lib}/*`,
      '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
      resolve(LAUNCHER_DIR, 'ReadCommitted.java'),
      brokers,
      topic,
    ],
    { maxBuffer: 1 << 30, timeout: 120_000 },
  );
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [partition, offset, ...value] = line.split(' ');
      return { partition: Number(partition), offset, value: value.join(' ') };
    });
}

/** The event log as the Java client reads it: see readTopicJava. */
export async function readEventLogJava(
  brokers: string,
  topic: string,
): Promise<{ partition: number; offset: string; event: RoomEvent }[]> {
  return (await readTopicJava(brokers, topic)).map(({ partition, offset, value }) => ({
    partition,
    offset,
    event: JSON.parse(value) as RoomEvent,
  }));
}
