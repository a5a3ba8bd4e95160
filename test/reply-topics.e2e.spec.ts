import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { sendEvent } from './support/matrix-client';
import { AppProcess, isolatedEnv, TEST_USERS } from './support/pipeline';

/** The value of a counter on an app's /metrics (summed over its labels). */
async function metric(app: AppProcess, name: string): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  let sum = 0;
  for (const [, value] of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(value);
  return sum;
}

describe('reply topics during rolling upgrades', () => {
  it("a consumer that is behind replies to a stopped gateway's deleted topic without slowing the other gateways' replies", async () => {
    const env = isolatedEnv({ SEND_TIMEOUT_MS: '1500', KAFKA_COMMAND_PARTITIONS: '2' });
    const consumer = await AppProcess.start('consumer', env);
    const leaving = await AppProcess.start('gateway', env);
    const staying = await AppProcess.start('gateway', env);
    const send = (gateway: AppProcess, txnId: string) =>
      sendEvent(gateway.url, TEST_USERS.alice.token, '!rolling:test.local', 'm.room.message', txnId, { body: txnId });
    try {
      assert.equal((await send(staying, `warm-${randomUUID()}`)).status, 200);
      // The consumer falls behind (frozen for less than its session timeout: it keeps its partitions) while the
      // leaving gateway's clients send; they get 503 and the commands wait in the log with the leaving gateway's
      // reply topic as their address.
      consumer.pause();
      const waiting = await Promise.all(Array.from({ length: 40 }, () => send(leaving, `left-${randomUUID()}`)));
      assert.ok(
        waiting.every((res) => res.status === 503),
        'the sends to the leaving gateway time out',
      );
      await leaving.stop(); // deletes its reply topic
      consumer.resume();
      // The consumer now replies to the deleted topic, and to the staying gateway's sends, interleaved.
      const latencies: number[] = [];
      const until = Date.now() + 6000;
      while (Date.now() < until) {
        const started = Date.now();
        const res = await send(staying, `stay-${randomUUID()}`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        latencies.push(Date.now() - started);
      }
      const undeliverable = await metric(consumer, 'matrix_consumer_replies_undeliverable_total');
      assert.ok(undeliverable >= 1, `the consumer did reply to the deleted topic (${undeliverable} undeliverable)`);
      const longest = Math.max(...latencies);
      process.stdout.write(
        `# staying gateway: ${latencies.length} sends, longest ${longest} ms; ${undeliverable} replies undeliverable\n`,
      );
      assert.ok(
        longest < 1000,
        `the staying gateway's sends were answered at their usual pace (longest ${longest} ms)`,
      );
    } finally {
      consumer.resume();
      await Promise.all([leaving.stop(), staying.stop(), consumer.stop()]);
    }
  });
});
