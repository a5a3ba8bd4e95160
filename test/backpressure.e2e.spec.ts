import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertExactlyOnce } from './support/exactly-once';
import { runLoad, Transaction, TransactionOutcome } from './support/load';
import { sendEvent, SendResult } from './support/matrix-client';
import { AppProcess, isolatedEnv, TEST_USERS } from './support/pipeline';

const SEND_TIMEOUT_MS = 2000;

async function metric(app: AppProcess, name: string): Promise<number> {
  const text = await (await fetch(app.metricsUrl)).text();
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return Number(match?.[1] ?? NaN);
}

const users = [TEST_USERS.alice, TEST_USERS.bob];
const batch = (prefix: string, count: number): Transaction[] =>
  Array.from({ length: count }, (_, i) => ({
    token: users[i % users.length].token,
    roomId: `!backlog-${i % 5}:test.local`,
    txnId: `${prefix}-${i}`,
    sends: 1,
  }));

async function send(gateway: AppProcess, t: Transaction): Promise<SendResult & { ms: number }> {
  const started = Date.now();
  const res = await sendEvent(gateway.url, t.token, t.roomId, 'm.room.message', t.txnId, {
    msgtype: 'm.text',
    body: t.txnId,
  });
  return { ...res, ms: Date.now() - started };
}

/** New transactions, one every `everyMs`, until `refusals` of them were refused for backlog (or `forMs` passed). */
async function untilRefused(gateway: AppProcess, prefix: string, refusals: number, everyMs: number, forMs: number) {
  const sent: Transaction[] = [];
  const refused: { at: number; ms: number; retryAfterMs: number; retryAfter: number }[] = [];
  const deadline = Date.now() + forMs;
  while (refused.length < refusals && Date.now() < deadline) {
    const t = batch(prefix, sent.length + 1)[sent.length];
    sent.push(t);
    const res = await send(gateway, t);
    assert.equal(res.status, 503, JSON.stringify(res.body));
    if (typeof res.body.retry_after_ms === 'number')
      refused.push({
        at: Date.now(),
        ms: res.ms,
        retryAfterMs: res.body.retry_after_ms,
        retryAfter: Number(res.headers.get('retry-after')),
      });
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  return { sent, refused };
}

describe('backpressure from the consumers’ lag', () => {
  it('refuses new sends at once with a growing Retry-After while the consumers are stalled, answers retries of transactions already in the log, and accepts again once drained', async () => {
    const env = isolatedEnv({
      SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
      BACKPRESSURE_POLL_MS: '200',
      KAFKA_COMMAND_PARTITIONS: '2',
    });
    let consumer = await AppProcess.start('consumer', env);
    const gateway = await AppProcess.start('gateway', env);
    const outcomes = new Map<string, TransactionOutcome>();
    const record = (done: TransactionOutcome[]) => {
      for (const o of done) {
        const known = outcomes.get(o.transaction.txnId);
        if (known) known.eventIds.push(...o.eventIds);
        else outcomes.set(o.transaction.txnId, o);
      }
    };
    try {
      record(await runLoad(() => gateway.url, batch('warm', 40), { concurrency: 8 }));

      // The consumer goes; sends made now wait in the commands topic and time out.
      await consumer.stop();
      const backlog = batch('backlog', 60);
      const timedOut = await Promise.all(backlog.map((t) => send(gateway, t)));
      assert.ok(
        timedOut.every((res) => res.status === 503 && res.ms >= SEND_TIMEOUT_MS - 100),
        'the backlog was built from sends that waited SEND_TIMEOUT_MS',
      );

      // New sends are refused at once, and the longer the stall, the longer the Retry-After.
      const first = await untilRefused(gateway, 'refused', 6, 400, 15_000);
      assert.equal(first.refused.length, 6, 'the gateway refused new sends for the backlog');
      for (const r of first.refused) {
        assert.ok(r.ms < SEND_TIMEOUT_MS / 2, `refused in ${r.ms} ms, not after a wait`);
        assert.ok(r.retryAfterMs > SEND_TIMEOUT_MS, `retry_after_ms ${r.retryAfterMs} beyond what a send may wait`);
        assert.equal(r.retryAfter, Math.ceil(r.retryAfterMs / 1000), 'Retry-After is retry_after_ms in seconds');
      }
      const [earliest, latest] = [first.refused[0], first.refused.at(-1)!];
      assert.ok(
        latest.retryAfterMs >= earliest.retryAfterMs + (latest.at - earliest.at) / 2,
        `Retry-After grows while the consumers stay stalled: ${first.refused.map((r) => r.retryAfterMs).join(', ')} ms`,
      );
      assert.ok((await metric(gateway, 'matrix_gateway_backlog_records')) >= backlog.length);
      assert.ok((await metric(gateway, 'matrix_gateway_backlog_refusals_total')) >= first.refused.length);
      process.stdout.write(
        `# refused in ${Math.max(...first.refused.map((r) => r.ms))} ms at most; retry_after_ms ${first.refused.map((r) => r.retryAfterMs).join(', ')}\n`,
      );

      // A consumer again: every transaction, backlog and refused alike, succeeds with the client's retries.
      consumer = await AppProcess.start('consumer', env);
      record(await runLoad(() => gateway.url, [...backlog, ...first.sent], { concurrency: 16 }));
      const after = await send(gateway, batch('drained', 1)[0]);
      assert.equal(after.status, 200, 'accepted again once drained');
      record([
        {
          transaction: batch('drained', 1)[0],
          eventIds: [String(after.body.event_id)],
          retryable: [],
          failures: [],
          longestWaitMs: after.ms,
        },
      ]);

      // Stalled again: new sends refused, but a retry of a transaction whose event is in the log is answered.
      await consumer.stop();
      const second = await untilRefused(gateway, 'second', 1, 200, 15_000);
      assert.equal(second.refused.length, 1, 'refusing again');
      for (const t of backlog.slice(0, 10)) {
        const res = await send(gateway, t);
        assert.equal(res.status, 200, `${t.txnId}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.event_id, outcomes.get(t.txnId)!.eventIds[0], 'the same event');
        assert.ok(res.ms < SEND_TIMEOUT_MS / 2, `answered at once (${res.ms} ms)`);
      }
      assert.ok((await metric(gateway, 'matrix_gateway_late_replies_answered_total')) >= 10);

      consumer = await AppProcess.start('consumer', env);
      record(await runLoad(() => gateway.url, second.sent, { concurrency: 16 }));
      await assertExactlyOnce(env, [...outcomes.values()]);
    } finally {
      await Promise.all([gateway.stop(), consumer.stop()]);
    }
  });
});
