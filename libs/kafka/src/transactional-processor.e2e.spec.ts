import './kafkajs-fixes';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, Offsets, Producer } from 'kafkajs';
import {
  BatchResult,
  PartitionHandler,
  TransactionalProcessor,
  TransactionalProcessorOptions,
} from './transactional-processor';

const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * The broker, seen through a Kafka client that counts the producers it hands out and still has connected, and
 * can make a producer's connect fail: how a test injects a take-over failure without touching the processor.
 */
function countingKafka(failConnect: (transactionalId: string) => boolean = () => false) {
  const kafka = new Kafka({ brokers, logLevel: logLevel.NOTHING, clientId: 'processor-test' });
  const live = new Set<Producer>();
  const counting = Object.create(kafka) as Kafka;
  counting.producer = (config) => {
    const producer = kafka.producer(config);
    const connect = producer.connect.bind(producer);
    const disconnect = producer.disconnect.bind(producer);
    producer.connect = async () => {
      if (failConnect(config?.transactionalId ?? ''))
        throw new Error(`injected: connect of ${config?.transactionalId} fails`);
      await connect();
      live.add(producer);
    };
    producer.disconnect = async () => {
      live.delete(producer);
      await disconnect();
    };
    return producer;
  };
  return { kafka, counting, live };
}

/**
 * A Kafka client whose transactional producers hand every sendOffsets of a transaction to `intercept` first, which
 * may delay it, or fail it instead of sending it: how a test freezes or breaks a commit at its offsets.
 */
function interceptingOffsets(
  clientId: string,
  intercept: (offsets: Offsets, send: () => Promise<void>) => Promise<void>,
): { kafka: Kafka; base: Kafka } {
  const base = new Kafka({ brokers, logLevel: logLevel.NOTHING, clientId });
  const kafka = Object.create(base) as Kafka;
  kafka.producer = (config) => {
    const producer = base.producer(config);
    if (!config?.transactionalId) return producer;
    const begin = producer.transaction.bind(producer);
    producer.transaction = async () => {
      const tx = await begin();
      const sendOffsets = tx.sendOffsets.bind(tx);
      tx.sendOffsets = (offsets) => intercept(offsets, () => sendOffsets(offsets));
      return tx;
    };
    return producer;
  };
  return { kafka, base };
}

const quietHandler = (overrides: Partial<PartitionHandler<object>> = {}): PartitionHandler<object> => ({
  createState: () => ({}),
  restore: () => undefined,
  processBatch: (): BatchResult => ({ records: [], afterCommit: () => undefined }),
  ...overrides,
});

describe('the exactly-once processor when things fail', () => {
  const ns = `proc-${randomUUID().slice(0, 8)}`;
  const input = `${ns}.input`;
  const changelog = `${ns}.changelog`;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  const base = (name: string, onFatal: (error: Error) => void): TransactionalProcessorOptions => ({
    name,
    groupId: `${ns}.${name}`,
    inputTopic: input,
    changelogTopic: changelog,
    partitionsConcurrently: 2,
    sessionTimeoutMs: 6000,
    fetchMinBytes: 1,
    fetchMaxWaitMs: 100,
    maxRequestBytes: 900_000,
    transactionTimeoutMs: 10_000,
    onFatal,
  });

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    const admin = new Kafka({ brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({
      topics: [input, changelog].map((topic) => ({ topic, numPartitions: 2 })),
      waitForLeaders: true,
    });
    await admin.disconnect();
  });
  after(() => {
    process.off('unhandledRejection', onUnhandled);
  });

  it('survives take-overs that fail while no batch waits, retries them, and leaks no producer', async () => {
    let failures = 0;
    // The producer that writes the restore markers cannot connect twice, then a restore fails once after it did.
    const { counting, live } = countingKafka((id) => id === '' && failures < 2 && ++failures > 0);
    let stateFailures = 0;
    const fatal: Error[] = [];
    const handler = quietHandler({
      createState: () => {
        if (failures >= 2 && stateFailures < 1) {
          stateFailures++;
          throw new Error('injected: restore fails');
        }
        return {};
      },
    });
    const processor = new TransactionalProcessor(
      counting,
      base('takeover', (error) => fatal.push(error)),
      handler,
    );
    await processor.start();
    try {
      await until(() => processor.isReady, 60000, 'the processor to become ready after the failed take-overs');
      assert.equal(failures, 2, 'the connect failures happened');
      assert.equal(stateFailures, 1, 'the restore failure happened');
      assert.deepEqual(unhandled, [], 'no unhandled rejection (Node would have ended the process)');
      assert.deepEqual(fatal, []);
      assert.equal(live.size, 3, 'the restore marker writer and the two transactional producers, none left over');
    } finally {
      await processor.stop();
    }
    assert.equal(live.size, 0, 'stop releases every producer');
  });

  it('commits a batch that writes nothing right after one that did: it only moves the offsets', async () => {
    // A batch of client retries (all duplicates) has no output: its transaction only adds offsets, and the
    // coordinator may still be finishing the previous commit (CONCURRENT_TRANSACTIONS), which kafkajs does not retry.
    const { kafka, counting } = countingKafka();
    const outcomes = { committed: 0, aborted: 0 };
    let handled = 0;
    const handler = quietHandler({
      processBatch: (_state, batch) => {
        const written = batch.messages.some((m) => m.value?.toString() === 'out');
        return {
          records: written ? [{ topic: changelog, messages: [{ key: 'k', value: 'v' }] }] : [],
          afterCommit: () => void (handled += batch.messages.length),
        };
      },
    });
    const observer = {
      batch: (_n: number, _s: number, committed: boolean) => void outcomes[committed ? 'committed' : 'aborted']++,
      restored: () => undefined,
      lag: () => undefined,
    };
    const ownInput = `${ns}.retries`; // records left in the shared input would crash the next test's stage at once
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: ownInput, numPartitions: 2 }], waitForLeaders: true });
    await admin.disconnect();
    const processor = new TransactionalProcessor(
      counting,
      { ...base('empty', () => undefined), inputTopic: ownInput, observer },
      handler,
    );
    await processor.start();
    const producer = kafka.producer();
    try {
      await until(() => processor.isReady, 60000, 'ready');
      await producer.connect();
      // The second record arrives at varying moments of the first one's commit.
      let records = 0;
      for (let i = 0; i < 60; i++) {
        await producer.send({ topic: ownInput, messages: [{ key: 'k', value: 'out', partition: 0 }] });
        await sleep(i % 15);
        await producer.send({ topic: ownInput, messages: [{ key: 'k', value: 'none', partition: 0 }] });
        records += 2;
        await until(() => handled >= records, 30000, 'both records to commit');
      }
      assert.equal(outcomes.aborted, 0, 'no transaction was aborted');
    } finally {
      await producer.disconnect();
      await processor.stop();
    }
  });

  it('never lets a consumer the group moved on from commit: its offsets are refused and nothing it decided is applied', async () => {
    // The zombie decides a batch, then stalls before its offsets (as a process frozen mid-transaction would) until
    // the group has dropped it and another member has taken its partition over.
    let stalled!: () => void;
    const reachedOffsets = new Promise<void>((resolve) => (stalled = resolve));
    let wake!: () => void;
    const woken = new Promise<void>((resolve) => (wake = resolve));
    const { kafka: zombieKafka, base: base0 } = interceptingOffsets('zombie-test', async (_offsets, send) => {
      stalled();
      await woken;
      return send();
    });
    const applied = { zombie: 0, survivor: 0 };
    const outcomes: boolean[] = [];
    const handlerOf = (who: keyof typeof applied) =>
      quietHandler({
        processBatch: (_state, batch) => ({
          records: [],
          afterCommit: () => void (applied[who] += batch.messages.length),
        }),
      });
    const ownInput = `${ns}.zombie`;
    const admin = base0.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: ownInput, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const options = { ...base('zombie', () => undefined), inputTopic: ownInput };
    const zombie = new TransactionalProcessor(
      zombieKafka,
      {
        ...options,
        observer: {
          batch: (_n, _s, committed) => void outcomes.push(committed),
          restored: () => undefined,
          lag: () => undefined,
        },
      },
      handlerOf('zombie'),
    );
    const survivor = new TransactionalProcessor(base0, { ...options, name: 'survivor' }, handlerOf('survivor'));
    const producer = base0.producer();
    try {
      await zombie.start();
      await until(() => zombie.isReady, 60000, 'the zombie-to-be to be ready');
      await producer.connect();
      await producer.send({ topic: ownInput, messages: [{ key: 'k', value: 'v' }] });
      await reachedOffsets;
      await survivor.start();
      await until(() => applied.survivor === 1, 60000, 'the survivor to take the partition over and commit the record');
      wake();
      await until(() => outcomes.length > 0, 30000, "the zombie's transaction to end");
      assert.deepEqual(outcomes, [false], "the zombie's transaction did not commit");
      await sleep(2000);
      assert.deepEqual(applied, { zombie: 0, survivor: 1 }, 'the record was applied once, by the survivor');
    } finally {
      wake();
      await producer.disconnect();
      await Promise.all([zombie.stop(), survivor.stop()]);
    }
  });

  it('decides the next batch while one commits, and when that one fails, commits neither and reads both again, in order, once', async () => {
    // One transaction stalls (1 s) and then fails, as a commit refused by the broker would, while the consumer goes
    // on fetching and deciding the batches after it on top of the uncommitted one.
    let failures = 0;
    const { kafka: failing, base: base0 } = interceptingOffsets('pipelined-test', async (offsets, send) => {
      const through = Math.max(...offsets.topics.flatMap((t) => t.partitions.map((p) => Number(p.offset))));
      if (failures === 0 && through >= 10) {
        failures++;
        await sleep(1000);
        throw new Error('injected: this commit fails');
      }
      return send();
    });
    const decided: number[] = [];
    const committed: number[] = [];
    const aborted: number[] = [];
    let uncommitted = 0;
    let overlapped = false;
    const handler: PartitionHandler<object> = {
      ...quietHandler(),
      decidesOnUncommitted: true,
      processBatch: (_state, batch) => {
        const offsets = batch.messages.map((m) => Number(m.offset));
        if (uncommitted > 0) overlapped = true;
        uncommitted++;
        decided.push(...offsets);
        return {
          records: [],
          afterCommit: () => void (uncommitted--, committed.push(...offsets)),
          aborted: () => void (uncommitted--, aborted.push(...offsets)),
        };
      },
    };
    const ownInput = `${ns}.pipelined`;
    const admin = base0.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: ownInput, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const processor = new TransactionalProcessor(
      failing,
      { ...base('pipelined', () => undefined), inputTopic: ownInput },
      handler,
    );
    const producer = base0.producer();
    const total = 40;
    try {
      await processor.start();
      await until(() => processor.isReady, 60000, 'the processor to be ready');
      await producer.connect();
      for (let i = 0; i < total; i++) {
        await producer.send({ topic: ownInput, messages: [{ key: 'k', value: String(i) }] });
        await sleep(50);
      }
      await until(() => committed.length >= total, 60000, 'every record to commit');
      await sleep(1000);
      assert.equal(failures, 1, 'one commit failed');
      assert.ok(overlapped, 'a batch was decided while an earlier one had not committed');
      assert.ok(aborted.length > 0, 'the failed batch was told');
      assert.deepEqual(
        committed,
        Array.from({ length: total }, (_, i) => i),
        'every record committed once, in offset order',
      );
      assert.ok(
        aborted.some(
          (offset) => offset > Math.min(...aborted) && decided.indexOf(offset) < decided.lastIndexOf(offset),
        ),
        'a batch decided on top of the failed one was not committed but read again',
      );
    } finally {
      await producer.disconnect();
      await processor.stop();
    }
  });

  it('tells its owner it cannot go on when its consumer stops for good, instead of staying live and never ready', async () => {
    const { kafka, counting } = countingKafka();
    const fatal: Error[] = [];
    const handler = quietHandler({
      processBatch: () => {
        throw new TypeError('a defect in the stage'); // not retriable: kafkajs does not restart the consumer
      },
    });
    const processor = new TransactionalProcessor(
      counting,
      base('crash', (error) => fatal.push(error)),
      handler,
    );
    await processor.start();
    const producer = kafka.producer();
    try {
      await until(() => processor.isReady, 60000, 'ready');
      await producer.connect();
      await producer.send({ topic: input, messages: [{ key: 'k', value: 'v' }] });
      await until(() => fatal.length > 0, 60000, 'the fatal report');
      assert.match(fatal[0].message, /consumer stopped for good: a defect in the stage/);
      assert.equal(processor.isReady, false);
    } finally {
      await producer.disconnect();
      await processor.stop();
    }
  });
});
