/**
 * `npm run bench:state`: what the dedup state costs, per candidate engine for the on-disk state stores, and how long
 * a restore takes against the real broker (KAFKA_BROKERS, else the local launcher's default address).
 *
 * For each engine: bytes on disk and of V8 heap per remembered transaction, committed writes a second (batches of
 * 100, as a busy partition commits them), lookups a second (hits and misses), and restore rate from a changelog
 * (records applied a second). Then, with the engine the consumer uses (SQLite through DiskStore), for each size of
 * `--restore-entries` (default: `--entries`): the time to read the changelog alone (no store), a full restore from
 * it into an empty store, and a partial one from the checkpoint with 1% more records after it; with the event loop's
 * longest delays while each ran (what a consumer's other partitions and heartbeats wait).
 *
 * With `--scale`, for each size: a store of that many entries built through a full restore's path (no Kafka), then
 * its lookups and commits a second, and how long it takes to open.
 *
 *   npm run bench:state -- [--entries 1000000] [--engines sqlite,lmdb,heap|none] [--restore-entries 1000000,10000000]
 *                          [--scale 10000000,30000000]
 */
/* eslint-disable no-console -- a terminal program */
import '@app/kafka'; // before kafkajs: patches its read_committed filter
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
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
const engines = arg('engines', 'sqlite,lmdb,heap')
  .split(',')
  .filter((engine) => engine !== 'none');
const restoreSizes = arg('restore-entries', String(entries))
  .split(',')
  .map(Number)
  .filter((size) => size > 0);
const scaleSizes = arg('scale', '').split(',').filter(Boolean).map(Number);
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
  finishRestore(): void | Promise<void>;
  close(): void;
}

function sqliteCandidate(dir: string, forRestore = false): Candidate {
  const store = new TxnStore(new DiskStore(join(dir, 'state.db'), 64 << 20), WINDOW_MS);
  if (forRestore) store.clear(); // a restore into an empty store is a full one (see DiskStore.clear)
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

const candidates: Record<string, (dir: string, forRestore?: boolean) => Candidate> = {
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
  /** How long one commit of BATCH entries held the event loop, ms. */
  commit_p99_ms: number;
  commit_max_ms: number;
}

/** The `q` quantile (0..1) of `values`, which it sorts. */
function quantile(values: number[], q: number): number {
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.floor(q * values.length))] ?? NaN;
}

async function measureEngine(engine: string): Promise<EngineResult> {
  const dir = mkdtempSync(join(tmpdir(), `bench-state-${engine}-`));
  try {
    const heapBefore = heapUsed();
    const store = candidates[engine](dir);
    const keys: string[] = [];
    const commitMs: number[] = [];
    const started = process.hrtime.bigint();
    for (let written = 0; written < entries; written += BATCH) {
      const batch: [string, TxnRecord][] = [];
      for (let i = 0; i < BATCH; i++) {
        const key = id();
        if (keys.length < LOOKUPS) keys.push(key);
        batch.push([key, record()]);
      }
      const commitStarted = performance.now();
      store.commit(batch);
      commitMs.push(performance.now() - commitStarted);
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
    const target = candidates[engine](restoreDir, true);
    const rows = Array.from({ length: Math.min(entries, 500_000) }, () => [id(), record()] as const);
    const restoreStarted = process.hrtime.bigint();
    for (const [key, value] of rows) target.restore(key, value);
    await target.finishRestore();
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
      commit_p99_ms: Number(quantile(commitMs, 0.99).toFixed(1)),
      commit_max_ms: Number(Math.max(...commitMs).toFixed(1)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ScaleResult {
  entries: number;
  /** Building the store through a full restore's path (staged, merged by the worker), records from memory. */
  build_s: number;
  disk_bytes_per_entry: number;
  /** Opening it again, as a restarted consumer does. */
  open_ms: number;
  lookups_per_s: number;
  misses_per_s: number;
  /** Commits of BATCH new entries with their checkpoint, for SCALE_COMMIT_SECONDS: entries a second. */
  writes_per_s: number;
  commit_p50_ms: number;
  commit_p99_ms: number;
  commit_max_ms: number;
}

const SCALE_COMMIT_SECONDS = 20;

/** Random base64url text, cheaply: building tens of millions of entries with crypto's randomness takes minutes. */
const pool = randomBytes(1 << 20).toString('base64url');
let seed = 0x2545f491;
const fastText = (length: number): string => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  const at = (seed >>> 0) % (pool.length - length);
  return pool.slice(at, at + length);
};
const fastId = (): string => fastText(11) + fastText(11);

/**
 * What a consumer's store does once it holds `size` entries: lookups (of entries spread over the whole store, and of
 * absent keys) and commits of new entries, as 2,000 sends a second against a day's worth would make them.
 */
async function measureScale(size: number): Promise<ScaleResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-state-scale-'));
  const file = join(dir, 'state.db');
  try {
    const built = new TxnStore(new DiskStore(file, 64 << 20), WINDOW_MS);
    const sample: string[] = [];
    const every = Math.max(1, Math.floor(size / LOOKUPS));
    const started = performance.now();
    built.clear();
    const ts = Date.now();
    for (let i = 0; i < size; i++) {
      const key = fastId();
      if (i % every === 0) sample.push(key);
      built.apply(key, { event_id: `$${fastText(43)}`, ts });
    }
    await built.restored({ offset: '0', fingerprint: 'bench' });
    const buildSeconds = (performance.now() - started) / 1000;
    built.close();
    const opened = performance.now();
    const store = new TxnStore(new DiskStore(file, 64 << 20), WINDOW_MS);
    const openMs = performance.now() - opened;
    const lookups = (keys: string[]): number => {
      const t = performance.now();
      for (const key of keys) store.get(key);
      return keys.length / ((performance.now() - t) / 1000);
    };
    const hits = lookups(sample.sort(() => Math.random() - 0.5));
    const misses = lookups(Array.from({ length: LOOKUPS }, fastId));
    const commitMs: number[] = [];
    const writing = performance.now();
    for (let offset = 1; performance.now() - writing < SCALE_COMMIT_SECONDS * 1000; offset++) {
      const batch: [string, TxnRecord][] = Array.from({ length: BATCH }, () => [fastId(), record()]);
      const t = performance.now();
      store.commit(batch, { offset: String(offset), fingerprint: 'bench' });
      commitMs.push(performance.now() - t);
    }
    const writeSeconds = (performance.now() - writing) / 1000;
    store.close();
    return {
      entries: size,
      build_s: Number(buildSeconds.toFixed(1)),
      disk_bytes_per_entry: Math.round(diskUsage(dir) / size),
      open_ms: Math.round(openMs),
      lookups_per_s: Math.round(hits),
      misses_per_s: Math.round(misses),
      writes_per_s: Math.round((commitMs.length * BATCH) / writeSeconds),
      commit_p50_ms: Number(quantile(commitMs, 0.5).toFixed(1)),
      commit_p99_ms: Number(quantile(commitMs, 0.99).toFixed(1)),
      commit_max_ms: Number(Math.max(...commitMs).toFixed(1)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Delays {
  /** The event loop's delay while the restore ran, ms: the longest, and the 99th percentile. */
  event_loop_max_ms: number;
  event_loop_p99_ms: number;
}

interface RestoreResult {
  entries: number;
  produce_ms: number;
  /** The changelog read to its marker with nothing applied: what the fetching alone takes. */
  fetch_only_ms: number;
  /** `merge_ms`: of `ms`, the worker's merge of the staged records into the new file, with its indexes. */
  full: { records: number; ms: number; kind: string; merge_ms: number } & Delays;
  partial: { records: number; ms: number; kind: string } & Delays;
  full_s_per_million: number;
}

/** Runs `task` with the event loop's delay recorded (resolution 10 ms). */
async function withDelays<T>(task: () => Promise<T>): Promise<[T, Delays]> {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  try {
    const result = await task();
    histogram.disable();
    return [
      result,
      {
        event_loop_max_ms: Math.round(histogram.max / 1e6),
        event_loop_p99_ms: Math.round(histogram.percentile(99) / 1e6),
      },
    ];
  } finally {
    histogram.disable();
  }
}

/**
 * A changelog of `size` records, read once to its end with no store (the fetching alone), restored into an empty
 * SQLite store (full), then `size / 100` more records restored into the same store from its checkpoint (partial), as
 * after a restart.
 */
async function measureRestore(brokers: string, size: number): Promise<RestoreResult> {
  const kafka = new Kafka({ clientId: 'bench-state', brokers: brokers.split(','), logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `bench.state.${Date.now()}`;
  // The shared broker is sometimes slow to host a new topic's leader (UNKNOWN_TOPIC_OR_PARTITION): try again.
  for (let attempt = 1; ; attempt++) {
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
      await admin.fetchTopicOffsets(topic);
      break;
    } catch (error) {
      if (attempt >= 5) throw error;
      await new Promise((done) => setTimeout(done, 2000));
    }
  }
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
  await produce(size);
  const produceMs = Date.now() - produceStarted;
  const owner = createProducer(kafka, { transactionalId: `${topic}.owner`, idempotent: true, maxInFlightRequests: 1 });
  await owner.connect();
  const dir = mkdtempSync(join(tmpdir(), 'bench-state-restore-'));
  const store = new TxnStore(new DiskStore(join(dir, 'state.db'), 64 << 20), WINDOW_MS);
  let mergeMs = 0;
  const restore = async (withStore = true): Promise<RestoreStats> => {
    const marker = await writeRestoreMarker(owner, topic, 0);
    const apply = withStore
      ? (m: KafkaMessage): void => store.apply(m.key!.toString(), decodeTxnRecord(m.value))
      : () => undefined;
    // The time `restored` takes: after a full restore, the worker's merge of the staged records.
    const local: LocalState | undefined = withStore
      ? {
          checkpoint: () => store.checkpoint(),
          clear: () => store.clear(),
          restored: async (checkpoint) => {
            const merging = performance.now();
            await store.restored(checkpoint);
            mergeMs = Math.round(performance.now() - merging);
          },
        }
      : undefined;
    return restoreChangelog(kafka, topic, [{ partition: 0, apply, local }], new Map([[0, marker]]));
  };
  try {
    const fetchOnly = await restore(false);
    const [full, fullDelays] = await withDelays(() => restore());
    const fullMergeMs = mergeMs;
    await produce(Math.ceil(size / 100));
    const [partial, partialDelays] = await withDelays(() => restore());
    const summary = (stats: RestoreStats, delays: Delays) => ({
      records: stats.records,
      ms: stats.millis,
      kind: stats.partitions[0].kind,
      ...delays,
    });
    return {
      entries: size,
      produce_ms: produceMs,
      fetch_only_ms: fetchOnly.millis,
      full: { ...summary(full, fullDelays), merge_ms: fullMergeMs },
      partial: summary(partial, partialDelays),
      full_s_per_million: Number(((full.millis / full.records) * 1000).toFixed(2)),
    };
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
    const result = await measureEngine(engine);
    results.push(result);
    console.log(
      `${engine}: ${result.disk_bytes_per_entry} B disk and ${result.heap_bytes_per_entry} B heap per entry, ` +
        `${result.writes_per_s} writes/s (batches of ${BATCH}), ${result.lookups_per_s} lookups/s ` +
        `(${result.misses_per_s} misses/s), restore applies ${result.restore_applies_per_s}/s`,
    );
  }
  const scale: ScaleResult[] = [];
  for (const size of scaleSizes) {
    const result = await measureScale(size);
    scale.push(result);
    console.log(
      `a store of ${size}: built in ${result.build_s} s, ${result.disk_bytes_per_entry} B disk per entry, opened in ` +
        `${result.open_ms} ms; ${result.lookups_per_s} lookups/s (${result.misses_per_s} misses/s), ` +
        `${result.writes_per_s} writes/s (commits of ${BATCH}: p50 ${result.commit_p50_ms} ms, p99 ` +
        `${result.commit_p99_ms} ms, max ${result.commit_max_ms} ms)`,
    );
  }
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
  const restores: RestoreResult[] = [];
  for (const size of restoreSizes) {
    const restore = await measureRestore(brokers, size);
    restores.push(restore);
    console.log(
      `restore of ${size} into SQLite: reading the changelog alone ${restore.fetch_only_ms} ms; full ` +
        `${restore.full.records} records in ${restore.full.ms} ms (${restore.full_s_per_million} s per million, the ` +
        `merge ${restore.full.merge_ms} ms of it, ` +
        `event loop delayed at most ${restore.full.event_loop_max_ms} ms); partial from the checkpoint ` +
        `${restore.partial.records} records in ${restore.partial.ms} ms (${restore.partial.kind}, event loop delayed ` +
        `at most ${restore.partial.event_loop_max_ms} ms)`,
    );
  }
  const result = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, load: loadavg() },
    entries,
    engines: results,
    restores,
    scale,
  };
  const dir = join(__dirname, '../../bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'state-cost.json'), `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
