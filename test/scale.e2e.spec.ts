import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertExactlyOnce, transactions } from './support/exactly-once';
import { runLoad } from './support/load';
import { AppProcess, isolatedEnv, TEST_USERS } from './support/pipeline';

const SEND_TIMEOUT_MS = 2000;
/**
 * A request may take the wait bound plus the time to publish and to answer; twice that and a few seconds for a
 * loaded 2-core machine, still far from a request that hangs.
 */
const WAIT_BOUND_MS = 2 * SEND_TIMEOUT_MS + 3000;
describe('scaling out: many gateways and consumers as separate processes', () => {
  const env = isolatedEnv({
    SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
    CONSUMER_SESSION_TIMEOUT_MS: '6000',
    KAFKA_COMMAND_PARTITIONS: '6',
  });
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
        if (done === 600)
          events.push(
            consumers
              .shift()!
              .stop()
              .then(() => undefined),
          ); // a consumer leaves the group
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
    process.stdout.write(
      `# scale test: ${outcomes.length} transactions, ${outcomes.filter((o) => o.retryable.length > 0).length} retried, longest wait ${longest} ms\n`,
    );
  });

  it('turns requests over MAX_IN_FLIGHT away with 503 and Retry-After instead of queueing them', async () => {
    const small = await AppProcess.start('gateway', {
      ...isolatedEnv({ SEND_TIMEOUT_MS: '1500' }),
      MAX_IN_FLIGHT: '2',
    });
    try {
      // No consumer serves this gateway's topics: every request waits for its full timeout, holding its slot.
      const answers = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          fetch(`${small.url}/_matrix/client/v3/rooms/!r:test.local/send/m.room.message/inflight-${i}`, {
            method: 'PUT',
            headers: { authorization: `Bearer ${TEST_USERS.alice.token}` },
            body: '{"msgtype":"m.text","body":"waits"}',
          }).then(async (res) => ({
            status: res.status,
            retryAfter: res.headers.get('retry-after'),
            body: (await res.json()) as { error: string },
          })),
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
