/**
 * `npm run bench:state`: what the dedup state costs, per candidate engine for the on-disk state stores, and how long
 * a restore takes against the real broker (KAFKA_BROKERS, else the local launcher's default address).
 *
 * For each engine: bytes on disk and of V8 heap per remembered transaction, committed writes a second (batches of
 * 100, as a busy partition commits them), lookups a second (hits and misses), and restore rate from a changelog
 * (records applied a second). Then, with the engine the consumer uses (SQLite through DiskStore): a full restore of
 * `--entries` from the changelog, and a partial one from a checkpoint with 1% of them after it.
 *
 *   npm run bench:state -- [--entries 1000000] [--engines sqlite,lmdb,heap]
 */
/* eslint-disable no-console -- a terminal program */
import '@app/kafka'; // before kafkajs: patches its read_committed filter
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, KafkaMessage, logLevel } from 'kafkajs';
import { decodeTxnRecord, TxnRecord } from '@app/contracts';
import {
  createProducer,
  LocalState,
  restoreChangelog,
  RestoreStats,
  silenceKafkajsTimerWarnings,
  writeRestoreMarker,
} from '@app/kafka';
import { DiskStore } from '../apps/consumer/src/store/disk-store';
import { TxnStore } from '../apps/consumer/src/store/txn-store';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const entries = Number(arg('entries', '1000000'));
const engines = arg('engines', 'sqlite,lmdb,heap').split(',');
const WINDOW_MS = 86_400_000;
const BATCH = 100;
const LOOKUPS = 200_000;

const id = (): string => randomBytes(16).toString('base64url').slice(0, 22);
const record = (): TxnRecord => ({ event_id: `$${randomBytes(32).toString('base64url')}`, ts: Date.now() });

function heapUsed(): number {
  (global as unknown as { gc: () => void }).gc();
  return process.memoryUsage().heapUsed;
}

/** Bytes the files under `dir` take on disk (allocated blocks: lmdb's map file is sparse). */
function diskUsage(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const stat = statSync(join(dir, name));
    total += stat.isDirectory() ? diskUsage(join(dir, name)) : stat.blocks * 512;
  }
  return total;
}

/** What the bench asks of an engine: the store's operations, in the shape the consumer uses them. */
interface Candidate {
  commit(batch: [string, TxnRecord][]): void;
  get(key: string): TxnRecord | undefined;
  /** One changelog record while restoring (the engine may write them in bigger transactions). */
  restore(key: string, value: TxnRecord): void;
  finishRestore(): void;
  close(): void;
}

function sqliteCandidate(dir: string): Candidate {
  const store = new TxnStore(new DiskStore(join(dir, 'state.db'), 64 << 20), WINDOW_MS);
  let offset = 0;
  return {
    commit: (batch) => store.commit(batch, { offset: String(offset++), fingerprint: 'bench' }),
    get: (key) => store.get(key),
    restore: (key, value) => store.apply(key, value),
    finishRestore: () => store.restored({ offset: String(offset++), fingerprint: 'bench' }),
    close: () => store.close(),
  };
}

function lmdbCandidate(dir: string): Candidate {
  // Loaded only when asked for: a devDependency, for this comparison.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { open } = require('lmdb') as typeof import('lmdb');
  const db = open<TxnRecord, string>({ path: dir, cache: false });
  let pending: [string, TxnRecord][] = [];
  const flush = (): void => {
    const rows = pending;
    pending = [];
    db.transactionSync(() => {
      for (const [key, value] of rows) void db.put(key, value);
    });
  };
  return {
    commit: (batch) =>
      db.transactionSync(() => {
        for (const [key, value] of batch) void db.put(key, value);
        void db.put('__checkpoint__', { ts: 0 });
      }),
    get: (key) => db.get(key),
    restore: (key, value) => {
      pending.push([key, value]);
      if (pending.length >= 20_000) flush();
    },
    finishRestore: flush,
    close: () => void db.close(),
  };
}

/** The in-heap Map the consumer used before the on-disk stores, for comparison. */
function heapCandidate(): Candidate {
  const map = new Map<string, TxnRecord>();
  return {
    commit: (batch) => batch.forEach(([key, value]) => map.set(key, value)),
    get: (key) => map.get(key),
    restore: (key, value) => void map.set(key, value),
    finishRestore: () => undefined,
    close: () => map.clear(),
  };
}

const candidates: Record<string, (dir: string) => Candidate> = {
  sqlite: sqliteCandidate,
  lmdb: lmdbCandidate,
  heap: heapCandidate,
};

interface EngineResult {
  engine: string;
  disk_bytes_per_entry: number;
  heap_bytes_per_entry: number;
  writes_per_s: number;
  lookups_per_s: number;
  misses_per_s: number;
  restore_applies_per_s: number;
}

function measureEngine(engine: string): EngineResult {
  const dir = mkdtempSync(join(tmpdir(), `bench-state-${engine}-`));
  try {
    const heapBefore = heapUsed();
    const store = candidates[engine](dir);
    const keys: string[] = [];
    const started = process.hrtime.bigint();
    for (let written = 0; written < entries; written += BATCH) {
      const batch: [string, TxnRecord][] = [];
      for (let i = 0; i < BATCH; i++) {
        const key = id();
        if (keys.length < LOOKUPS) keys.push(key);
        batch.push([key, record()]);
      }
      store.commit(batch);
    }
    const writeSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    const heapBytes = heapUsed() - heapBefore - keys.length * 70; // the sample of keys kept for lookups
    const lookups = (sample: string[]): number => {
      const t = process.hrtime.bigint();
      for (const key of sample) store.get(key);
      return sample.length / (Number(process.hrtime.bigint() - t) / 1e9);
    };
    const hits = lookups(keys.sort(() => Math.random() - 0.5));
    const misses = lookups(Array.from({ length: LOOKUPS }, id));
    store.close();
    const diskBytes = diskUsage(dir);

    const restoreDir = mkdtempSync(join(tmpdir(), `bench-restore-${engine}-`));
    const target = candidates[engine](restoreDir);
    const rows = Array.from({ length: Math.min(entries, 500_000) }, () => [id(), record()] as const);
    const restoreStarted = process.hrtime.bigint();
    for (const [key, value] of rows) target.restore(key, value);
    target.finishRestore();
    const restoreSeconds = Number(process.hrtime.bigint() - restoreStarted) / 1e9;
    target.close();
    rmSync(restoreDir, { recursive: true, force: true });

    return {
      engine,
      disk_bytes_per_entry: Math.round(diskBytes / entries),
      heap_bytes_per_entry: Math.max(0, Math.round(heapBytes / entries)),
      writes_per_s: Math.round(entries / writeSeconds),
      lookups_per_s: Math.round(hits),
      misses_per_s: Math.round(misses),
      restore_applies_per_s: Math.round(rows.length / restoreSeconds),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface RestoreResult {
  produce_ms: number;
  full: { records: number; ms: number; kind: string };
  partial: { records: number; ms: number; kind: string };
}

/**
 * A changelog of `entries` records, restored into an empty SQLite store (full), then `entries / 100` more records
 * restored into the same store from its checkpoint (partial), as after a restart.
 */
async function measureRestore(brokers: string): Promise<RestoreResult> {
  const kafka = new Kafka({ clientId: 'bench-state', brokers: brokers.split(','), logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `bench.state.${Date.now()}`;
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  const producer = createProducer(kafka, { idempotent: true });
  await producer.connect();
  const produce = async (count: number): Promise<void> => {
    const chunk = 4_000; // keeps each produce request under the broker's 1 MB message limit
    for (let sent = 0; sent < count; sent += chunk) {
      const messages = Array.from({ length: Math.min(chunk, count - sent) }, () => ({
        key: id(),
        value: JSON.stringify(record()),
        partition: 0,
      }));
      await producer.send({ topic, acks: -1, messages });
    }
  };
  const produceStarted = Date.now();
  await produce(entries);
  const produceMs = Date.now() - produceStarted;
  const owner = createProducer(kafka, { transactionalId: `${topic}.owner`, idempotent: true, maxInFlightRequests: 1 });
  await owner.connect();
  const dir = mkdtempSync(join(tmpdir(), 'bench-state-restore-'));
  const store = new TxnStore(new DiskStore(join(dir, 'state.db'), 64 << 20), WINDOW_MS);
  const restore = async (): Promise<RestoreStats> => {
    const marker = await writeRestoreMarker(owner, topic, 0);
    const apply = (m: KafkaMessage): void => store.apply(m.key!.toString(), decodeTxnRecord(m.value));
    const local: LocalState = store;
    return restoreChangelog(kafka, topic, [{ partition: 0, apply, local }], new Map([[0, marker]]));
  };
  try {
    const full = await restore();
    await produce(Math.ceil(entries / 100));
    const partial = await restore();
    const summary = (stats: RestoreStats) => ({
      records: stats.records,
      ms: stats.millis,
      kind: stats.partitions[0].kind,
    });
    return { produce_ms: produceMs, full: summary(full), partial: summary(partial) };
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
    await Promise.all([producer.disconnect(), owner.disconnect()]);
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  }
}

async function main(): Promise<void> {
  silenceKafkajsTimerWarnings();
  const results: EngineResult[] = [];
  for (const engine of engines) {
    const result = measureEngine(engine);
    results.push(result);
    console.log(
      `${engine}: ${result.disk_bytes_per_entry} B disk and ${result.heap_bytes_per_entry} B heap per entry, ` +
        `${result.writes_per_s} writes/s (batches of ${BATCH}), ${result.lookups_per_s} lookups/s ` +
        `(${result.misses_per_s} misses/s), restore applies ${result.restore_applies_per_s}/s`,
    );
  }
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
  const restore = await measureRestore(brokers);
  const perMillion = (ms: number, records: number) => Number(((ms / records) * 1000).toFixed(2));
  console.log(
    `restore into SQLite: full ${restore.full.records} records in ${restore.full.ms} ms ` +
      `(${perMillion(restore.full.ms, restore.full.records)} s per million); partial from the checkpoint ` +
      `${restore.partial.records} records in ${restore.partial.ms} ms (${restore.partial.kind})`,
  );
  const result = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    entries,
    engines: results,
    restore: {
      ...restore,
      full_s_per_million: perMillion(restore.full.ms, restore.full.records),
    },
  };
  const dir = join(__dirname, '../../bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'state-cost.json'), `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
