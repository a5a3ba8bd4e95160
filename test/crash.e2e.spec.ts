import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EVENT_HEADERS } from '@app/contracts';
import { readEventLog } from './support/event-log';
import { runLoad, Transaction } from './support/load';
import { AppProcess, Pipeline, startPipeline, TEST_USERS } from './support/pipeline';

const TRANSACTIONS = 3000;
const users = [TEST_USERS.alice, TEST_USERS.bob, TEST_USERS.alicePhone];

describe('crashing the consumer under load', () => {
  let pipeline: Pipeline;
  before(async () => {
    pipeline = await startPipeline({
      SEND_TIMEOUT_MS: '2000',
      CONSUMER_SESSION_TIMEOUT_MS: '6000',
      LOG_LEVEL: process.env.CRASH_LOG_LEVEL ?? 'warn',
    });
  });
  after(async () => {
    await pipeline?.stop();
  });

  it('loses and doubles nothing when the consumer is killed -9 twice: every 200 event_id is in the log exactly once', async () => {
    // 10% of the transactions are sent twice on purpose; all of them are retried on retryable errors.
    const transactions: Transaction[] = Array.from({ length: TRANSACTIONS }, (_, i) => ({
      token: users[i % users.length].token,
      roomId: `!crash-${i % 25}:test.local`,
      txnId: `crash-${i}`,
      sends: i % 10 === 0 ? 2 : 1,
    }));
    const kills: Promise<void>[] = [];
    const crashAt = new Set([Math.floor(TRANSACTIONS * 0.2), Math.floor(TRANSACTIONS * 0.6)]);
    const killTimes: number[] = [];
    const crashAndRestart = async (): Promise<void> => {
      killTimes.push(Date.now());
      await pipeline.consumer.kill();
      pipeline.consumer = await AppProcess.start('consumer', pipeline.env);
    };
    let chain = Promise.resolve();
    const outcomes = await runLoad(() => pipeline.gateway.url, transactions, {
      concurrency: 32,
      onProgress: (done) => {
        if (crashAt.has(done)) kills.push((chain = chain.then(crashAndRestart)));
      },
    });
    await Promise.all(kills);
    assert.equal(kills.length, 2, 'the consumer was killed twice during the load');

    const failures = outcomes.flatMap((o) => o.failures);
    assert.deepEqual(failures, [], 'every transaction ended with 200');
    const retried = outcomes.filter((o) => o.retryable.some((status) => status === 503 || status === 0)).length;
    assert.ok(retried > 0, 'the crashes were felt by clients (otherwise this test proves nothing)');
    assert.equal(outcomes.length, TRANSACTIONS, 'every transaction was sent');
    for (const outcome of outcomes) {
      assert.equal(
        new Set(outcome.eventIds).size,
        1,
        `${outcome.transaction.txnId} got one event_id however often it was sent`,
      );
    }

    const answered = new Map(outcomes.map((o) => [o.eventIds[0], o.transaction]));
    const log = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, { timeoutMs: 120000 });
    const logged = log.map((e) => e.event.event_id);
    const seen = new Set<string>();
    const doubled = log.filter((e) => (seen.has(e.event.event_id) ? true : (seen.add(e.event.event_id), false)));
    for (const e of doubled) {
      const copies = log
        .filter((other) => other.event.event_id === e.event.event_id)
        .map((c) => `${c.partition}@${c.offset} t=${c.timestamp}`);
      process.stdout.write(
        `# doubled: ${e.event.event_id} txn ${e.headers[EVENT_HEADERS.txnId]} copies ${copies.join(', ')}\n`,
      );
    }
    if (doubled.length > 0)
      process.stdout.write(`# kills at ${killTimes.join(', ')}; env ${JSON.stringify(pipeline.env)}\n`);
    assert.equal(new Set(logged).size, logged.length, 'no event is in the log twice');
    assert.deepEqual(new Set(logged), new Set(answered.keys()), 'the log holds exactly the events clients were given');
    const transactionsLogged = log.map(
      (e) => `${e.headers[EVENT_HEADERS.scopeHash]}|${e.event.room_id}|${e.headers[EVENT_HEADERS.txnId]}`,
    );
    assert.equal(new Set(transactionsLogged).size, transactionsLogged.length, 'no transaction is in the log twice');
    process.stdout.write(
      `# crash test: ${TRANSACTIONS} transactions, ${retried} needed client retries, ${logged.length} events\n`,
    );
  });
});
