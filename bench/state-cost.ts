/**
 * `npm run bench:state`: what the dedup state costs. Measures the heap per remembered transaction, and how long
 * a consumer takes to restore a partition's state from the changelog, per million entries, against the real
 * broker (KAFKA_BROKERS, else the local launcher's default address).
 *
 *   npm run bench:state -- [--entries 1000000]
 */
/* eslint-disable no-console -- a terminal program */
import '@app/kafka'; // before kafkajs: patches its read_committed filter
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { decodeTxnRecord, TxnRecord } from '@app/contracts';
import { createProducer, restoreChangelog, silenceKafkajsTimerWarnings, writeRestoreMarker } from '@app/kafka';
import { TxnStore } from '../apps/consumer/src/store/txn-store';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const entries = arg('entries', 1_000_000);
const id = (): string => randomBytes(16).toString('base64url').slice(0, 22);
const record = (): Buffer =>
  Buffer.from(
    JSON.stringify({ event_id: `$${randomBytes(32).toString('base64url')}`, ts: Date.now() } satisfies TxnRecord),
  );

function heapUsed(): number {
  (global as unknown as { gc: () => void }).gc();
  return process.memoryUsage().heapUsed;
}

async function measureMemory(): Promise<number> {
  const state = new TxnStore(86_400_000);
  const before = heapUsed();
  for (let i = 0; i < entries; i++) state.apply(id(), decodeTxnRecord(record()));
  const after = heapUsed();
  if (state.size !== entries) throw new Error('state lost entries');
  return (after - before) / entries;
}

async function measureRestore(brokers: string): Promise<{ produceMs: number; restoreMs: number; records: number }> {
  const kafka = new Kafka({ clientId: 'bench-state', brokers: brokers.split(','), logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `bench.state.${Date.now()}`;
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  const producer = createProducer(kafka, { idempotent: true });
  await producer.connect();
  const started = Date.now();
  const chunk = 4_000; // keeps each produce request under the broker's 1 MB message limit
  for (let sent = 0; sent < entries; sent += chunk) {
    const messages = Array.from({ length: Math.min(chunk, entries - sent) }, () => ({
      key: id(),
      value: record(),
      partition: 0,
    }));
    await producer.send({ topic, acks: -1, messages });
  }
  const produceMs = Date.now() - started;
  const owner = createProducer(kafka, { transactionalId: `${topic}.owner`, idempotent: true, maxInFlightRequests: 1 });
  await owner.connect();
  const state = new TxnStore(86_400_000);
  const restoreStarted = Date.now();
  const nonce = await writeRestoreMarker(owner, topic, 0);
  const stats = await restoreChangelog(
    kafka,
    topic,
    [{ partition: 0, apply: (m) => state.apply(m.key!.toString(), decodeTxnRecord(m.value)) }],
    new Map([[0, nonce]]),
  );
  const restoreMs = Date.now() - restoreStarted;
  await Promise.all([producer.disconnect(), owner.disconnect()]);
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
  return { produceMs, restoreMs, records: stats.records };
}

async function main(): Promise<void> {
  silenceKafkajsTimerWarnings();
  const bytesPerEntry = await measureMemory();
  console.log(`memory: ${bytesPerEntry.toFixed(0)} bytes of heap per remembered transaction (${entries} entries)`);
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
  const restore = await measureRestore(brokers);
  const perMillion = (restore.restoreMs / restore.records) * 1_000_000;
  console.log(
    `restore: ${restore.records} entries in ${restore.restoreMs} ms = ${(perMillion / 1000).toFixed(1)} s per million (produced in ${restore.produceMs} ms)`,
  );
  const result = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    entries,
    bytes_per_entry: Math.round(bytesPerEntry),
    restore_ms: restore.restoreMs,
    restore_s_per_million: Number((perMillion / 1000).toFixed(2)),
  };
  const dir = join(__dirname, '../../bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'state-cost.json'), `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
