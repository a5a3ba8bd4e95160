import '@app/kafka'; // before kafkajs: patches its read_committed filter
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { commandKey, SEND_COMMAND_VERSION, SendCommand } from '@app/contracts';
import { AppProcess, isolatedEnv } from './support/pipeline';
import { scrapeMetrics } from './support/metrics';
import { INSPECT_ON_FREE_PORT, retainedHeapBytes } from './support/retained-heap';

/** Transactions the capped consumer takes; the in-heap store (~190 bytes each) could not hold them in the cap. */
const TRANSACTIONS = Number(process.env.STATE_HEAP_TRANSACTIONS ?? 500_000);
/** The consumer's V8 heap cap, MB: what it needs with no state, plus room for its batches; not for 500,000 entries. */
const HEAP_MB = 128;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The state stores live on disk: a consumer whose heap is capped takes far more transactions than its heap could
 * remember, refuses none, and its heap does not grow with the transactions it remembers. Commands go straight into the
 * commands topic (the gateway is not what is measured), several hundred thousand of them: a few minutes here.
 */
describe('a consumer with its heap capped', () => {
  let env: Record<string, string>;
  let kafka: Kafka;
  let consumer: AppProcess;
  before(async () => {
    env = isolatedEnv({ CONSUMER_FETCH_MIN_BYTES: '65536', CONSUMER_FETCH_MAX_WAIT_MS: '20' });
    kafka = new Kafka({ brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
    consumer = await AppProcess.start('consumer', env, {
      nodeArgs: [`--max-old-space-size=${HEAP_MB}`, INSPECT_ON_FREE_PORT],
    });
  });
  after(async () => {
    await consumer?.stop();
  });

  it(`takes ${TRANSACTIONS} transactions without refusing one, its heap not growing with what it remembers`, async () => {
    const replyTopic = `${env.KAFKA_REPLY_TOPIC_PREFIX}heap-test`;
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: replyTopic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();

    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const produce = async (from: number, to: number): Promise<void> => {
      const chunk = 2000;
      for (let sent = from; sent < to; sent += chunk) {
        const messages = Array.from({ length: Math.min(chunk, to - sent) }, (_, j) => {
          const i = sent + j;
          const command: SendCommand = {
            v: SEND_COMMAND_VERSION,
            room_id: `!heap-${i % 50}:test.local`,
            type: 'm.room.message',
            txn_id: `heap-${i}`,
            scope_hash: `heap-scope-${i % 1000}`,
            sender: `@user${i % 1000}:test.local`,
            device_id: 'HEAPDEV',
            content: { msgtype: 'm.text', body: `transaction ${i}` },
            origin_server_ts: Date.now(),
            correlation_id: `heap-${i}`,
            reply_to: replyTopic,
          };
          return { key: commandKey(command.scope_hash, command.txn_id), value: JSON.stringify(command) };
        });
        await producer.send({ topic: env.KAFKA_TOPIC_COMMANDS, acks: -1, messages });
      }
    };
    const deadline = Date.now() + 20 * 60_000;
    const appended = async (expected: number): Promise<Map<string, number>> => {
      let unanswered = 0;
      for (;;) {
        await sleep(2000);
        assert.equal(consumer.exitCode, null, `the consumer runs:\n${consumer.output.slice(-20).join('')}`);
        // A scrape may go unanswered while a big batch holds the event loop on a loaded machine; many in a row may not.
        const metrics = await scrapeMetrics(consumer.metricsUrl).catch(() => undefined);
        unanswered = metrics ? 0 : unanswered + 1;
        assert.ok(unanswered < 15, `the consumer answers /metrics:\n${consumer.output.slice(-20).join('')}`);
        const taken = metrics?.get('matrix_consumer_events_appended_total{stage="send"}') ?? 0;
        if (metrics && taken >= expected) return metrics;
        assert.ok(Date.now() < deadline, `${taken} of ${expected} taken in time`);
      }
    };

    // The heap the consumer retains (after a full collection) with a tenth of the transactions remembered, then with
    // all of them: an in-heap store would have grown by ~190 bytes for each one in between.
    const early = Math.round(TRANSACTIONS / 10);
    await produce(0, early);
    await appended(early);
    const earlyHeap = await retainedHeapBytes(consumer);
    await produce(early, TRANSACTIONS);
    await producer.disconnect();
    const metrics = await appended(TRANSACTIONS);
    const lateHeap = await retainedHeapBytes(consumer);

    assert.equal(metrics.get('matrix_consumer_events_appended_total{stage="send"}'), TRANSACTIONS, 'every one taken');
    assert.equal(metrics.get('matrix_consumer_state_refusals_total{stage="send"}') ?? 0, 0, 'none refused');
    assert.equal(metrics.get('matrix_consumer_state_entries{stage="send"}'), TRANSACTIONS, 'every one remembered');
    const inHeapGrowth = (TRANSACTIONS - early) * 190;
    const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
    process.stdout.write(
      `# heap capped at ${HEAP_MB} MB: ${TRANSACTIONS} transactions remembered; heap retained ${mb(earlyHeap)} MB ` +
        `with ${early}, ${mb(lateHeap)} MB with all (an in-heap store would have grown by ${mb(inHeapGrowth)} MB)\n`,
    );
    assert.ok(lateHeap - earlyHeap < inHeapGrowth / 10, `heap retained ${lateHeap - earlyHeap} bytes more`);
  });
});
