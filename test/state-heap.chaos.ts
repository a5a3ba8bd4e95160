import '@app/kafka'; // before kafkajs: patches its read_committed filter
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { commandKey, SEND_COMMAND_VERSION, SendCommand } from '@app/contracts';
import { AppProcess, isolatedEnv } from './support/pipeline';
import { scrapeMetrics } from './support/metrics';

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
    consumer = await AppProcess.start('consumer', env, { nodeArgs: [`--max-old-space-size=${HEAP_MB}`] });
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

    const samples: { entries: number; heap: number }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const metrics = await scrapeMetrics(consumer.metricsUrl).catch(() => undefined);
        const entries = metrics?.get('matrix_consumer_state_entries{stage="send"}');
        const heap = metrics?.get('nodejs_heap_size_used_bytes');
        if (entries !== undefined && heap !== undefined) samples.push({ entries, heap });
        await sleep(1000);
      }
    })();

    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const chunk = 2000;
    for (let sent = 0; sent < TRANSACTIONS; sent += chunk) {
      const messages = Array.from({ length: Math.min(chunk, TRANSACTIONS - sent) }, (_, j) => {
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
    await producer.disconnect();

    const deadline = Date.now() + 20 * 60_000;
    let appended = 0;
    let unanswered = 0;
    try {
      while (appended < TRANSACTIONS && Date.now() < deadline) {
        await sleep(2000);
        assert.equal(consumer.exitCode, null, `the consumer runs:\n${consumer.output.slice(-20).join('')}`);
        // A scrape may go unanswered while a big batch holds the event loop on a loaded machine; many in a row may not.
        const metrics = await scrapeMetrics(consumer.metricsUrl).catch(() => undefined);
        unanswered = metrics ? 0 : unanswered + 1;
        assert.ok(unanswered < 15, `the consumer answers /metrics:\n${consumer.output.slice(-20).join('')}`);
        appended = metrics?.get('matrix_consumer_events_appended_total{stage="send"}') ?? appended;
      }
    } finally {
      sampling = false;
      await sampler;
    }
    const metrics = await scrapeMetrics(consumer.metricsUrl);
    assert.equal(metrics.get('matrix_consumer_events_appended_total{stage="send"}'), TRANSACTIONS, 'every one taken');
    assert.equal(metrics.get('matrix_consumer_state_refusals_total{stage="send"}') ?? 0, 0, 'none refused');
    assert.equal(metrics.get('matrix_consumer_state_entries{stage="send"}'), TRANSACTIONS, 'every one remembered');

    // The heap with few transactions remembered against the heap with most of them remembered: the in-heap store
    // would have added ~190 bytes for each of the half of TRANSACTIONS in between. Each phase's low-water mark is
    // compared, not its median: used heap between collections carries garbage of any age (medians of one build moved
    // by 25 MB from run to run), while what is retained, an in-heap store included, never drops below the mark.
    const early = samples.filter((s) => s.entries > 0 && s.entries < TRANSACTIONS / 4).map((s) => s.heap);
    const late = samples.filter((s) => s.entries > (TRANSACTIONS * 3) / 4).map((s) => s.heap);
    assert.ok(early.length >= 3 && late.length >= 3, `samples at both ends (${early.length}, ${late.length})`);
    const growth = Math.min(...late) - Math.min(...early);
    const inHeapGrowth = (TRANSACTIONS / 2) * 190;
    process.stdout.write(
      `# heap capped at ${HEAP_MB} MB: ${TRANSACTIONS} transactions remembered; heap used (low-water) ` +
        `${(Math.min(...early) / 2 ** 20).toFixed(1)} MB early, ${(Math.min(...late) / 2 ** 20).toFixed(1)} MB late ` +
        `(an in-heap store would have grown by ${(inHeapGrowth / 2 ** 20).toFixed(0)} MB)\n`,
    );
    assert.ok(growth < inHeapGrowth / 3, `heap grew by ${growth} bytes`);
  });
});
