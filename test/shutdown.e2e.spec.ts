import '@app/kafka'; // before kafkajs: patches its read_committed filter
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { assertExactlyOnce, transactions } from './support/exactly-once';
import { runLoad } from './support/load';
import { sendEvent } from './support/matrix-client';
import { AppProcess, isolatedEnv, TEST_USERS } from './support/pipeline';

async function replyTopics(env: Record<string, string>): Promise<string[]> {
  const admin = new Kafka({ brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    return (await admin.listTopics()).filter((topic) => topic.startsWith(env.KAFKA_REPLY_TOPIC_PREFIX));
  } finally {
    await admin.disconnect();
  }
}

describe('graceful shutdown (SIGTERM)', () => {
  it('a gateway answers what is in flight, then deletes its reply topic', async () => {
    const env = isolatedEnv({ SEND_TIMEOUT_MS: '3000' });
    const consumer = await AppProcess.start('consumer', env);
    const gateway = await AppProcess.start('gateway', env);
    try {
      assert.equal((await replyTopics(env)).length, 1, 'the gateway has its reply topic');
      let answered = 0;
      let stopped: Promise<number | null> | undefined;
      const sends = Array.from({ length: 100 }, (_, i) =>
        sendEvent(
          gateway.url,
          TEST_USERS.alice.token,
          '!shutdown:test.local',
          'm.room.message',
          `shutdown-${i}-${randomUUID()}`,
          { msgtype: 'm.text', body: `${i}` },
        )
          .then((res) => ({ status: res.status, retryAfter: res.headers.get('retry-after') }))
          .catch((error: Error & { cause?: { code?: string } }) => ({
            status: 0,
            retryAfter: error.cause?.code ?? error.message,
          }))
          .finally(() => {
            if (++answered === 5) stopped = gateway.stop();
          }),
      );
      const results = await Promise.all(sends);
      assert.ok(stopped, 'the gateway was stopped while requests were in flight');
      await stopped; // within AppProcess.stop's grace, or it throws
      const unanswered = results.filter((r) => r.status === 0);
      assert.deepEqual(unanswered, [], 'every request in flight got an answer');
      for (const r of results.filter((x) => x.status !== 200)) {
        assert.equal(r.status, 503);
        assert.ok(Number(r.retryAfter) >= 1);
      }
      assert.deepEqual(await replyTopics(env), [], 'its reply topic is gone');
    } finally {
      await Promise.all([gateway.stop(), consumer.stop()]);
    }
  });

  it('a gateway that stops disturbs no other: replies still reach the gateways that stay and the ones that come', async () => {
    const env = isolatedEnv({ SEND_TIMEOUT_MS: '3000' });
    const consumer = await AppProcess.start('consumer', env);
    const leaving = await AppProcess.start('gateway', env);
    const staying = await AppProcess.start('gateway', env);
    let coming: AppProcess | undefined;
    const send = (gateway: AppProcess) =>
      sendEvent(gateway.url, TEST_USERS.alice.token, '!stays:test.local', 'm.room.message', `stays-${randomUUID()}`, {
        msgtype: 'm.text',
        body: 'x',
      });
    try {
      for (const gateway of [leaving, staying, leaving]) assert.equal((await send(gateway)).status, 200);
      await leaving.stop(); // its reply topic, which the consumer wrote to, is deleted
      coming = await AppProcess.start('gateway', env);
      for (const gateway of [staying, coming, staying, coming])
        assert.equal((await send(gateway)).status, 200, 'answered at once, no retry');
    } finally {
      await Promise.all([leaving.stop(), staying.stop(), coming?.stop(), consumer.stop()]);
    }
  });

  it('a consumer commits its running batch before it leaves: nothing it did is lost or done twice', async () => {
    const env = isolatedEnv({ SEND_TIMEOUT_MS: '2000', KAFKA_COMMAND_PARTITIONS: '2' });
    let consumer = await AppProcess.start('consumer', env);
    const gateway = await AppProcess.start('gateway', env);
    const first = consumer;
    try {
      let replaced: Promise<void> | undefined;
      const outcomes = await runLoad(() => gateway.url, transactions('shutdown', 1200), {
        concurrency: 32,
        onProgress: (done) => {
          if (done !== 300) return;
          replaced = first.stop().then(async () => {
            consumer = await AppProcess.start('consumer', env);
          });
        },
      });
      await replaced;
      const aborted = first.output
        .join('')
        .split('\n')
        .filter((line) => line.includes('not committed'));
      assert.deepEqual(aborted, [], 'no batch of the stopping consumer was aborted');
      await assertExactlyOnce(env, outcomes);
    } finally {
      await Promise.all([gateway.stop(), consumer.stop()]);
    }
  });
});
