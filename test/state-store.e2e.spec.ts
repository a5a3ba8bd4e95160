import '@app/kafka'; // before kafkajs: patches its read_committed filter
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { assertExactlyOnce, transactions } from './support/exactly-once';
import { runLoad, TransactionOutcome } from './support/load';
import { AppProcess, isolatedEnv, Pipeline, startPipeline } from './support/pipeline';
import { scrapeMetrics } from './support/metrics';

const PARTITIONS = 4;

/** The send stage's restores on this consumer process, as its metrics tell them. */
async function sendRestores(consumer: AppProcess) {
  const metrics = await scrapeMetrics(consumer.metricsUrl);
  const of = (name: string, kind: string) => metrics.get(`${name}{stage="send",kind="${kind}"}`) ?? 0;
  return {
    partial: of('matrix_consumer_restores_total', 'partial'),
    full: of('matrix_consumer_restores_total', 'full'),
    partialRecords: of('matrix_consumer_restored_records_total', 'partial'),
    fullRecords: of('matrix_consumer_restored_records_total', 'full'),
    entries: metrics.get('matrix_consumer_state_entries{stage="send"}') ?? NaN,
  };
}

/** The checkpoint offset the send stage's store of `partition` holds, read from its SQLite file. */
function checkpointOf(env: Record<string, string>, partition: number): bigint | undefined {
  const file = join(
    env.STATE_DIR,
    encodeURIComponent(env.KAFKA_CONSUMER_GROUP),
    encodeURIComponent(env.KAFKA_TOPIC_TXNS),
    String(partition),
    'state.db',
  );
  if (!existsSync(file)) return undefined;
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    const row = db.prepare("SELECT value FROM meta WHERE name = 'checkpoint'").get() as { value: string } | undefined;
    return row ? BigInt((JSON.parse(row.value) as { offset: string }).offset) : undefined;
  } finally {
    db.close();
  }
}

/** Waits for a line of the app's log (its output arrives a little after what it answers over HTTP). */
async function untilLogged(app: AppProcess, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!pattern.test(app.output.join('')) && Date.now() < deadline)
    await new Promise((done) => setTimeout(done, 100));
  assert.match(app.output.join(''), pattern);
}

/** Each transaction again, once: every one must get the event_id it got first. */
async function assertRetriesGetTheirEvents(url: string, outcomes: TransactionOutcome[]): Promise<void> {
  const retries = await runLoad(
    () => url,
    outcomes.map((o) => ({ ...o.transaction, sends: 1 })),
    { concurrency: 16 },
  );
  const first = new Map(outcomes.map((o) => [o.transaction.txnId, o.eventIds[0]]));
  assert.equal(retries.length, outcomes.length);
  for (const retry of retries) {
    assert.deepEqual(retry.failures, [], `${retry.transaction.txnId}: retried with 200`);
    assert.equal(retry.eventIds[0], first.get(retry.transaction.txnId), `${retry.transaction.txnId}: its first event`);
  }
}

describe('state stores on disk: restores from the checkpoint, and full ones when they must', () => {
  let pipeline: Pipeline;
  let stateDir: string;
  let kafka: Kafka;
  const answered: TransactionOutcome[] = [];
  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'matrix-send-state-test-'));
    pipeline = await startPipeline({
      STATE_DIR: stateDir,
      SEND_TIMEOUT_MS: '2000',
      CONSUMER_SESSION_TIMEOUT_MS: '6000',
      LOG_LEVEL: 'info',
    });
    kafka = new Kafka({ brokers: pipeline.env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
  });
  after(async () => {
    await pipeline?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('after kill -9 under load, a restart on the same state directory replays only what followed the checkpoint, and loses and doubles nothing', async () => {
    const warmUp = await runLoad(() => pipeline.gateway.url, transactions('disk-a', 800), { concurrency: 32 });
    await assertExactlyOnce(pipeline.env, warmUp);
    let restarted: Promise<void> | undefined;
    const underLoad = await runLoad(() => pipeline.gateway.url, transactions('disk-b', 800), {
      concurrency: 32,
      onProgress: (done) => {
        if (done === 200)
          restarted = (async () => {
            await pipeline.consumer.kill();
            pipeline.consumer = await AppProcess.start('consumer', pipeline.env);
          })();
      },
    });
    assert.ok(restarted, 'the consumer was killed under load');
    await restarted;
    answered.push(...warmUp, ...underLoad);
    await assertExactlyOnce(pipeline.env, answered);
    assert.ok(
      underLoad.some((o) => o.retryable.length > 0),
      'clients felt the crash (otherwise it hit an idle consumer)',
    );

    const restores = await sendRestores(pipeline.consumer);
    assert.equal(restores.full, 0, 'no full restore');
    assert.equal(restores.partial, PARTITIONS, 'every partition restored from its checkpoint');
    // The changelog holds a record per transaction before the crash (1000 and more): a partial restore replays
    // only the batches that committed in Kafka and not yet on disk, and what the crash left after the checkpoint.
    process.stdout.write(`# partial restore after kill -9: ${restores.partialRecords} records replayed\n`);
    assert.ok(restores.partialRecords < 200, `replayed ${restores.partialRecords} records, not the whole changelog`);
    await assertRetriesGetTheirEvents(pipeline.gateway.url, answered.slice(0, 100));
  });

  it('a consumer with an empty state directory restores fully, and answers retries with their first events', async () => {
    await pipeline.consumer.stop();
    const empty = mkdtempSync(join(tmpdir(), 'matrix-send-state-empty-'));
    try {
      pipeline.consumer = await AppProcess.start('consumer', { ...pipeline.env, STATE_DIR: empty });
      const restores = await sendRestores(pipeline.consumer);
      assert.equal(restores.full, PARTITIONS);
      assert.equal(restores.partial, 0);
      assert.ok(restores.fullRecords >= answered.length, 'the whole changelog was replayed');
      await untilLogged(pipeline.consumer, /send partition \d: full restore \(no local state\)/);
      await assertRetriesGetTheirEvents(pipeline.gateway.url, answered.slice(100, 200));
    } finally {
      await pipeline.consumer.stop();
      rmSync(empty, { recursive: true, force: true });
    }
    pipeline.consumer = await AppProcess.start('consumer', pipeline.env);
  });

  it('a checkpoint below the log start offset forces a full restore', async () => {
    await pipeline.consumer.stop();
    const admin = kafka.admin();
    await admin.connect();
    try {
      const ends = await admin.fetchTopicOffsets(pipeline.env.KAFKA_TOPIC_TXNS);
      await admin.deleteTopicRecords({
        topic: pipeline.env.KAFKA_TOPIC_TXNS,
        partitions: ends.map(({ partition, high }) => ({ partition, offset: high })),
      });
      const starts = await admin.fetchTopicOffsets(pipeline.env.KAFKA_TOPIC_TXNS);
      for (const { partition, low } of starts) {
        const checkpoint = checkpointOf(pipeline.env, partition);
        assert.ok(checkpoint !== undefined && checkpoint < BigInt(low), `partition ${partition}: checkpoint below`);
      }
    } finally {
      await admin.disconnect();
    }
    pipeline.consumer = await AppProcess.start('consumer', pipeline.env);
    const restores = await sendRestores(pipeline.consumer);
    assert.equal(restores.full, PARTITIONS);
    await untilLogged(pipeline.consumer, /full restore \(checkpoint \d+ below the log start offset \d+\)/);
    assert.equal(restores.entries, 0, 'the store kept nothing the changelog no longer has');
  });

  it('the changelog topic deleted and created again under the same name forces a full restore', async () => {
    // Transactions remembered in the changelog that is about to go, so that the store has something to lose.
    answered.push(...(await runLoad(() => pipeline.gateway.url, transactions('disk-c', 200), { concurrency: 16 })));
    await pipeline.consumer.stop();
    const topic = pipeline.env.KAFKA_TOPIC_TXNS;
    const checkpoints = Array.from({ length: PARTITIONS }, (_, p) => checkpointOf(pipeline.env, p) ?? 0n);
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.deleteTopics({ topics: [topic] });
      // An attempt that failed (its wait for leaders timed out on a loaded broker) may have created the topic all the
      // same, and kafkajs answers false for a topic that exists: the new one is told from the old by being empty.
      const isNew = (): Promise<boolean> =>
        admin.fetchTopicOffsets(topic).then(
          (offsets) => offsets.length === PARTITIONS && offsets.every(({ high }) => high === '0'),
          () => false,
        );
      for (let created = false; !created;) {
        created = await admin
          .createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true })
          .catch(() => false);
        if (!created) created = await isNew();
        if (!created) await new Promise((done) => setTimeout(done, 500));
      }
    } finally {
      await admin.disconnect();
    }
    // The new topic's offsets reach past the old checkpoints, with other records: only the record at the checkpoint
    // can tell the two topics apart.
    const producer = kafka.producer();
    await producer.connect();
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const count = Number(checkpoints[partition]) + 5;
      for (let sent = 0; sent < count; sent += 1000)
        await producer.send({
          topic,
          messages: Array.from({ length: Math.min(1000, count - sent) }, (_, i) => ({
            key: `other-incarnation-${sent + i}`,
            value: null,
            partition,
          })),
        });
    }
    await producer.disconnect();

    pipeline.consumer = await AppProcess.start('consumer', pipeline.env);
    const restores = await sendRestores(pipeline.consumer);
    assert.equal(restores.full, PARTITIONS);
    assert.equal(restores.partial, 0);
    await untilLogged(pipeline.consumer, /full restore \(the record at checkpoint \d+ is not the one the store saw/);
    assert.equal(restores.entries, 0, "nothing of the old topic's state is kept");
  });
});

describe('a state directory that cannot be written', () => {
  it('gives a clear error and keeps the consumer live and not ready, without exiting, until it can', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'matrix-send-state-blocked-'));
    const blocked = join(dir, 'state');
    writeFileSync(blocked, 'a file where the state directory should be');
    const env = isolatedEnv({ STATE_DIR: blocked, LOG_LEVEL: 'info' });
    const consumer = await AppProcess.start('consumer', env, { waitReady: false });
    try {
      const deadline = Date.now() + 30_000;
      while (!consumer.output.join('').includes('is not usable') && Date.now() < deadline)
        await new Promise((done) => setTimeout(done, 200));
      assert.match(consumer.output.join(''), /STATE_DIR \S+ is not usable \((EEXIST|ENOTDIR)\); not ready until it is/);
      await new Promise((done) => setTimeout(done, 6000)); // past a retry
      assert.equal((await fetch(`${consumer.url}/health/live`)).status, 200, 'live');
      assert.equal((await fetch(`${consumer.url}/health/ready`)).status, 503, 'not ready');
      rmSync(blocked);
      await consumer.waitReady(60_000);
    } finally {
      await consumer.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a second consumer given the STATE_DIR of a running one says so, stays live and not ready, and takes it over once the first stops', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'matrix-send-state-shared-'));
    const env = isolatedEnv({ STATE_DIR: dir, LOG_LEVEL: 'info' });
    const first = await AppProcess.start('consumer', env);
    const second = await AppProcess.start('consumer', env, { waitReady: false });
    try {
      await untilLogged(
        second,
        new RegExp(
          `STATE_DIR ${dir} is in use by another consumer process \\(pid ${first.pid} on [^)]+\\); each consumer needs a STATE_DIR of its own; not ready until it is`,
        ),
      );
      assert.equal((await fetch(`${second.url}/health/live`)).status, 200, 'live');
      assert.equal((await fetch(`${second.url}/health/ready`)).status, 503, 'not ready');
      assert.equal(first.exitCode, null, 'the first runs on');
      await first.stop();
      await second.waitReady(60_000);
    } finally {
      await Promise.all([first.stop(), second.stop()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a disk that stops taking writes under load: a clear error, live and not ready without exiting, and once it takes writes again nothing is lost or doubled', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'matrix-send-state-full-'));
    const pipeline = await startPipeline({
      STATE_DIR: stateDir,
      SEND_TIMEOUT_MS: '2000',
      CONSUMER_SESSION_TIMEOUT_MS: '6000',
      LOG_LEVEL: 'info',
    });
    /** Sets the consumer's file size limit (soft RLIMIT_FSIZE): at 1 byte, as on a full disk, no file write works. */
    const limitFileSize = (limit: string): void => {
      const set = spawnSync('prlimit', ['--pid', String(pipeline.consumer.pid), `--fsize=${limit}:`]);
      assert.equal(set.status, 0, `prlimit: ${set.stderr?.toString()}`);
    };
    try {
      const before = await runLoad(() => pipeline.gateway.url, transactions('full-a', 300), { concurrency: 16 });
      await assertExactlyOnce(pipeline.env, before);

      limitFileSize('1');
      const during = runLoad(() => pipeline.gateway.url, transactions('full-b', 300), { concurrency: 16 });
      const consumer = pipeline.consumer;
      const where = stateDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      await untilLogged(
        consumer,
        new RegExp(
          `STATE_DIR ${where} is not usable \\((SQLITE_IOERR|SQLITE_FULL)[^)]*\\) [^;]+; leaving the consumer groups`,
        ),
      );
      const refusedAt = Date.now();
      await untilLogged(consumer, new RegExp(`STATE_DIR ${where} is not usable \\(EFBIG\\); not ready until it is`));
      await new Promise((done) => setTimeout(done, 7000)); // past a retry of the probe
      assert.equal(consumer.exitCode, null, 'the consumer did not exit');
      assert.equal((await fetch(`${consumer.url}/health/live`)).status, 200, 'live');
      assert.equal((await fetch(`${consumer.url}/health/ready`)).status, 503, 'not ready');

      limitFileSize('unlimited');
      await consumer.waitReady(60_000);
      assert.ok(Date.now() - refusedAt > 7000);
      const afterwards = await during;
      assert.ok(
        afterwards.some((o) => o.retryable.includes(503)),
        'clients got 503 while the disk refused (otherwise the limit hit an idle consumer)',
      );
      await assertExactlyOnce(pipeline.env, [...before, ...afterwards]);
      await assertRetriesGetTheirEvents(pipeline.gateway.url, [...before.slice(0, 50), ...afterwards.slice(0, 100)]);
      assert.equal(consumer.exitCode, null, 'the same process throughout');
    } finally {
      await pipeline.stop();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
