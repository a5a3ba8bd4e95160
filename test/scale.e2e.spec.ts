import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readEventLog } from './support/event-log';
import { runLoad, Transaction, TransactionOutcome } from './support/load';
import { AppProcess, isolatedEnv, TEST_USERS } from './support/pipeline';

const SEND_TIMEOUT_MS = 2000;
/** A request may take the wait bound plus the time to publish and to answer. */
const WAIT_BOUND_MS = SEND_TIMEOUT_MS + 1500;
const users = [TEST_USERS.alice, TEST_USERS.bob, TEST_USERS.alicePhone];

function transactions(prefix: string, count: number): Transaction[] {
  return Array.from({ length: count }, (_, i) => ({
    token: users[i % users.length].token,
    roomId: `!${prefix}-${i % 20}:test.local`,
    txnId: `${prefix}-${i}`,
    sends: i % 10 === 0 ? 2 : 1,
  }));
}

/** Every answered event is in the log exactly once, and nothing else is. */
async function assertExactlyOnce(env: Record<string, string>, outcomes: TransactionOutcome[]): Promise<void> {
  assert.deepEqual(outcomes.flatMap((o) => o.failures).slice(0, 5), [], 'every transaction ended with 200');
  for (const o of outcomes) assert.equal(new Set(o.eventIds).size, 1, `${o.transaction.txnId}: one event_id for every answer`);
  const answered = new Set(outcomes.map((o) => o.eventIds[0]));
  const log = await readEventLog(env.KAFKA_BROKERS, env.KAFKA_TOPIC_EVENTS, answered.size, 3000, 120000);
  const logged = log.map((e) => e.event.event_id);
  assert.equal(new Set(logged).size, logged.length, 'no event twice in the log');
  assert.deepEqual(new Set(logged), answered, 'the log holds exactly the answered events');
}

describe('scaling out: many gateways and consumers as separate processes', () => {
  const env = isolatedEnv({ SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS), CONSUMER_SESSION_TIMEOUT_MS: '6000', KAFKA_COMMAND_PARTITIONS: '6' });
  const gateways: AppProcess[] = [];
  const consumers: AppProcess[] = [];
  before(async () => {
    consumers.push(await AppProcess.start('consumer', env), await AppProcess.start('consumer', env));
    gateways.push(await AppProcess.start('gateway', env), await AppProcess.start('gateway', env));
  });
  after(async () => {
    await Promise.all([...gateways, ...consumers].map((app) => app.stop().catch(() => app.kill())));
  });

  it('keeps every answer exactly once while a consumer leaves, another joins, and a gateway restarts', async () => {
    let turn = 0;
    const nextGateway = () => gateways[turn++ % gateways.length].url;
    const events: Promise<void>[] = [];
    const outcomes = await runLoad(nextGateway, transactions('scale', 3000), {
      concurrency: 24,
      onProgress: (done) => {
        if (done === 600) events.push(consumers.shift()!.stop().then(() => undefined)); // a consumer leaves the group
        if (done === 1200) events.push(AppProcess.start('consumer', env).then((c) => void consumers.push(c))); // a third joins
        if (done === 1800) {
          const old = gateways.shift()!; // one gateway restarts; the other keeps serving
          events.push(old.stop().then(async () => void gateways.push(await AppProcess.start('gateway', env))));
        }
      },
    });
    await Promise.all(events);
    assert.equal(events.length, 3);
    await assertExactlyOnce(env, outcomes);
    const longest = Math.max(...outcomes.map((o) => o.longestWaitMs));
    assert.ok(longest <= WAIT_BOUND_MS, `no request waited longer than the bound (longest ${longest} ms)`);
    process.stdout.write(`# scale test: ${outcomes.length} transactions, ${outcomes.filter((o) => o.retryable.length > 0).length} retried, longest wait ${longest} ms\n`);
  });

  it('turns requests over MAX_IN_FLIGHT away with 503 and Retry-After instead of queueing them', async () => {
    const small = await AppProcess.start('gateway', { ...isolatedEnv({ SEND_TIMEOUT_MS: '1500' }), MAX_IN_FLIGHT: '2' });
    try {
      // No consumer serves this gateway's topics: every request waits for its full timeout, holding its slot.
      const answers = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          fetch(`${small.url}/_matrix/client/v3/rooms/!r:test.local/send/m.room.message/inflight-${i}`, {
            method: 'PUT',
            headers: { authorization: `Bearer ${TEST_USERS.alice.token}` },
            body: '{}',
          }).then(async (res) => ({ status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { error: string } })),
        ),
      );
      const turnedAway = answers.filter((a) => a.body.error.startsWith('Too many requests in flight'));
      assert.equal(turnedAway.length, 4);
      assert.ok(answers.every((a) => a.status === 503 && Number(a.retryAfter) >= 1));
    } finally {
      await small.stop();
    }
  });
});

