import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { sendEvent } from './support/matrix-client';
import { AppProcess, isolatedEnv, TEST_USERS } from './support/pipeline';

/** The value of a counter on an app's /metrics (summed over its labels). */
async function metric(app: AppProcess, name: string): Promise<number> {
  const text = await (await fetch(app.metricsUrl)).text();
  let sum = 0;
  for (const [, value] of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(value);
  return sum;
}

async function withAdmin<T>(env: Record<string, string>, use: (admin: ReturnType<Kafka['admin']>) => Promise<T>) {
  const admin = new Kafka({ brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}

const replyTopics = (env: Record<string, string>) =>
  withAdmin(env, async (admin) =>
    (await admin.listTopics()).filter((topic) => topic.startsWith(env.KAFKA_REPLY_TOPIC_PREFIX)),
  );

/** Starts a gateway and finds its reply topic (the one that was not there before). */
async function startGateway(env: Record<string, string>): Promise<{ gateway: AppProcess; topic: string }> {
  const before = new Set(await replyTopics(env));
  const gateway = await AppProcess.start('gateway', env);
  const added = (await replyTopics(env)).filter((topic) => !before.has(topic));
  assert.equal(added.length, 1, 'the gateway created one reply topic');
  return { gateway, topic: added[0] };
}

describe('reply topics during rolling upgrades', () => {
  it("a consumer that is behind replies to a stopped gateway's deleted topic without slowing the other gateways' replies", async () => {
    const env = isolatedEnv({ SEND_TIMEOUT_MS: '1500', KAFKA_COMMAND_PARTITIONS: '2' });
    const consumer = await AppProcess.start('consumer', env);
    const leaving = await AppProcess.start('gateway', env);
    const staying = await AppProcess.start('gateway', env);
    const send = (gateway: AppProcess, txnId: string) =>
      sendEvent(gateway.url, TEST_USERS.alice.token, '!rolling:test.local', 'm.room.message', txnId, {
        msgtype: 'm.text',
        body: txnId,
      });
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
      // A send may be refused at once for the backlog (the gateways see it too, until their next look at the
      // offsets): the client retries it. Every send that went through is timed.
      const latencies: number[] = [];
      let refused = 0;
      const until = Date.now() + 6000;
      while (Date.now() < until) {
        const started = Date.now();
        const res = await send(staying, `stay-${randomUUID()}`);
        if (res.status === 503 && typeof res.body.retry_after_ms === 'number') {
          refused++;
          await new Promise((resolve) => setTimeout(resolve, 50));
          continue;
        }
        assert.equal(res.status, 200, JSON.stringify(res.body));
        latencies.push(Date.now() - started);
      }
      assert.ok(latencies.length >= 20, `the staying gateway answered sends meanwhile (${latencies.length})`);
      const undeliverable = await metric(consumer, 'matrix_consumer_replies_undeliverable_total');
      assert.ok(undeliverable >= 1, `the consumer did reply to the deleted topic (${undeliverable} undeliverable)`);
      const longest = Math.max(...latencies);
      process.stdout.write(
        `# staying gateway: ${latencies.length} sends, longest ${longest} ms (${refused} refused for the backlog first); ${undeliverable} replies undeliverable\n`,
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

  it('removes the reply topic of a gateway that crashed once no one has read it for REPLY_TOPIC_ORPHAN_MS, never a living or briefly frozen one', async () => {
    // Longer than the reply reader's session (10 s), so that a gateway frozen for a moment can be seen unread.
    const orphanMs = 12_000;
    const env = isolatedEnv({ REPLY_TOPIC_ORPHAN_MS: String(orphanMs) });
    const consumer = await AppProcess.start('consumer', env);
    const busy = await startGateway(env);
    const idle = await startGateway(env); // a living gateway that sends nothing: its topic stays all the same
    const frozen = await startGateway(env); // frozen past its session, woken before REPLY_TOPIC_ORPHAN_MS
    const crashed = await startGateway(env);
    const living = [busy, idle, frozen];
    const send = (gateway: AppProcess) =>
      sendEvent(gateway.url, TEST_USERS.bob.token, '!orphans:test.local', 'm.room.message', `o-${randomUUID()}`, {
        msgtype: 'm.text',
        body: 'x',
      });
    try {
      assert.equal((await send(crashed.gateway)).status, 200);
      await crashed.gateway.kill(); // no graceful stop: its topic and reader group stay behind
      frozen.gateway.pause();
      const crashedAt = Date.now();
      assert.ok((await replyTopics(env)).includes(crashed.topic), 'the crashed gateway left its topic behind');
      // Both reader groups empty after the reader's session (10 s); the crashed one's stays empty.
      const woken = (async () => {
        await new Promise((resolve) => setTimeout(resolve, 10_000 + orphanMs / 3));
        const { groups } = await withAdmin(env, (admin) => admin.describeGroups([`${frozen.topic}.reader`]));
        frozen.gateway.resume();
        return groups[0].members.length;
      })();
      const deadline = crashedAt + 10_000 + orphanMs + 20_000;
      let topics = await replyTopics(env);
      while (topics.includes(crashed.topic) && Date.now() < deadline) {
        for (const { topic } of living) assert.ok(topics.includes(topic), 'living gateways keep their topics');
        assert.equal((await send(busy.gateway)).status, 200);
        await new Promise((resolve) => setTimeout(resolve, 500));
        topics = await replyTopics(env);
      }
      assert.equal(await woken, 0, 'the frozen gateway was seen without a reader before it woke');
      const removedAfter = Date.now() - crashedAt;
      assert.ok(!topics.includes(crashed.topic), `the orphaned topic is gone (looked for ${removedAfter} ms)`);
      assert.ok(removedAfter >= orphanMs, `not before REPLY_TOPIC_ORPHAN_MS (${removedAfter} ms)`);
      const { groups } = await withAdmin(env, (admin) => admin.describeGroups([`${crashed.topic}.reader`]));
      assert.equal(groups[0].state, 'Dead', 'its reader group is gone too');
      // The woken gateway reads its replies again (after rejoining its group).
      let answered = 0;
      for (let attempt = 0; attempt < 40 && answered !== 200; attempt++) {
        answered = (await send(frozen.gateway)).status;
        if (answered !== 200) await new Promise((resolve) => setTimeout(resolve, 500));
      }
      assert.equal(answered, 200, 'the woken gateway answers again');
      // The living gateways: their topics stay while they live, however long the orphan time passes.
      await new Promise((resolve) => setTimeout(resolve, orphanMs / 2));
      topics = await replyTopics(env);
      for (const { topic } of living) assert.ok(topics.includes(topic), 'living gateways keep their topics');
      for (const { gateway } of living) assert.equal((await send(gateway)).status, 200);
      let removed = 0;
      for (const { gateway } of living)
        removed += await metric(gateway, 'matrix_gateway_orphan_reply_topics_removed_total');
      assert.ok(removed >= 1, 'counted');
      process.stdout.write(`# the crashed gateway's reply topic was removed ${removedAfter} ms after the crash\n`);
    } finally {
      frozen.gateway.resume();
      await Promise.all([...living.map(({ gateway }) => gateway.stop()), crashed.gateway.kill(), consumer.stop()]);
    }
  });
});
