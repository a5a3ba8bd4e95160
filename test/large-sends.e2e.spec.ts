import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import '@app/kafka';
import { Kafka, logLevel } from 'kafkajs';
import { assertExactlyOnce } from './support/exactly-once';
import { runLoad, Transaction } from './support/load';
import { readEventLog } from './support/event-log';
import { sendEvent } from './support/matrix-client';
import { commandPartition } from './support/partitions';
import { AppProcess, isolatedEnv, TEST_USERS } from './support/pipeline';

/** The longest room ID the spec allows (255 bytes): every event of the room carries it twice. */
const LONG_ROOM = `!${'r'.repeat(242)}:test.local`;
const LARGE = { msgtype: 'm.text', body: 'x'.repeat(60_000) };

/** Records of the commands topic that the consumer group has not committed yet. */
async function commandLag(env: Record<string, string>): Promise<number> {
  const admin = new Kafka({ brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const ends = await admin.fetchTopicOffsets(env.KAFKA_TOPIC_COMMANDS);
    const [committed] = await admin.fetchOffsets({
      groupId: env.KAFKA_CONSUMER_GROUP,
      topics: [env.KAFKA_TOPIC_COMMANDS],
    });
    return ends.reduce((lag, { partition, high }) => {
      const at = Number(committed.partitions.find((p) => p.partition === partition)?.offset ?? -1);
      return lag + Number(high) - Math.max(at, 0);
    }, 0);
  } finally {
    await admin.disconnect();
  }
}

describe('large sends', () => {
  it('takes 200 concurrent 60 kB sends into one partition from one user: every one gets its event', async () => {
    // One command partition: whatever txnIds the user picks, they all meet there.
    // A gateway tuned for throughput gathers for longer: a burst then far exceeds the broker's 1 MiB per request.
    const env = isolatedEnv({
      KAFKA_COMMAND_PARTITIONS: '1',
      KAFKA_EVENT_PARTITIONS: '1',
      SEND_TIMEOUT_MS: '10000',
      PRODUCER_LINGER_MS: '50',
    });
    const consumer = await AppProcess.start('consumer', env);
    const gateway = await AppProcess.start('gateway', env);
    try {
      const burst: Transaction[] = Array.from({ length: 200 }, (_, i) => ({
        token: TEST_USERS.alice.token,
        roomId: '!large:test.local',
        txnId: `large-${i}-${randomUUID()}`,
        sends: 1,
        content: LARGE,
      }));
      // A client retries a 503; before the fix, every retry failed too, for minutes.
      const outcomes = await runLoad(() => gateway.url, burst, {
        concurrency: 200,
        maxAttempts: 20,
        retryPauseMs: 500,
      });
      await assertExactlyOnce(env, outcomes);
      assert.equal((await fetch(`${gateway.url}/health/ready`)).status, 200);
    } finally {
      await Promise.all([gateway.stop(), consumer.stop()]);
    }
  });

  it("recovers by itself when a produce breaks its producer: only that produce's sends get a retryable 503", async () => {
    // A commands topic created by hand with a lower limit than the gateway's request bound (KAFKA_MAX_REQUEST_BYTES):
    // the broker refuses partition 0's part of a produce with MESSAGE_TOO_LARGE and takes partition 1's. kafkajs
    // then rolls back the sequence numbers of both, so its idempotent producer can no longer write partition 1.
    const env = isolatedEnv({
      KAFKA_COMMAND_PARTITIONS: '2',
      KAFKA_EVENT_PARTITIONS: '1',
      PRODUCER_LINGER_MS: '50',
      SEND_TIMEOUT_MS: '3000',
    });
    const admin = new Kafka({ brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        {
          topic: env.KAFKA_TOPIC_COMMANDS,
          numPartitions: 2,
          configEntries: [{ name: 'max.message.bytes', value: '200000' }],
        },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const { alice, bob } = TEST_USERS;
    const onPartition = (
      user: { user_id: string; device_id: string },
      partition: number,
      prefix: string,
      count: number,
    ): string[] => {
      const ids: string[] = [];
      for (let i = 0; ids.length < count; i++)
        if (commandPartition(user, `${prefix}-${i}`, 2) === partition) ids.push(`${prefix}-${i}`);
      return ids;
    };
    const consumer = await AppProcess.start('consumer', env);
    const gateway = await AppProcess.start('gateway', env);
    try {
      const room = '!broken:test.local';
      const burst = await Promise.all([
        ...onPartition(alice, 0, 'large', 10).map((txnId) =>
          sendEvent(gateway.url, alice.token, room, 'm.room.message', txnId, LARGE),
        ),
        ...onPartition(bob, 1, 'small', 4).map((txnId) =>
          sendEvent(gateway.url, bob.token, room, 'm.room.message', txnId, { msgtype: 'm.text', body: 'small' }),
        ),
      ]);
      const statuses = burst.map((res) => res.status);
      assert.ok(
        statuses.includes(503),
        `some produces were refused (otherwise this test proves nothing): ${statuses.join(' ')}`,
      );
      assert.deepEqual(
        new Set(statuses.filter((status) => status !== 200)),
        new Set([503]),
        'refused sends are told to retry',
      );
      for (const res of burst.filter((r) => r.status === 503)) assert.ok(Number(res.headers.get('retry-after')) >= 1);

      // The next sends to partition 1, one at a time as a polite client sends them, all go through, exactly once.
      const after: Transaction[] = onPartition(bob, 1, 'after', 10).map((txnId) => ({
        token: bob.token,
        roomId: '!after:test.local',
        txnId,
        sends: 1,
      }));
      const outcomes = await runLoad(() => gateway.url, after, { concurrency: 1, maxAttempts: 1 });
      assert.deepEqual(
        outcomes.flatMap((o) => o.failures),
        [],
        'every send after the broken produce got 200 at once',
      );
      const log = await readEventLog(env.KAFKA_BROKERS, env.KAFKA_TOPIC_EVENTS, {
        keep: (event) => event.room_id === '!after:test.local',
        atLeast: after.length,
      });
      assert.deepEqual(
        new Set(log.map((e) => e.event.event_id)),
        new Set(outcomes.map((o) => o.eventIds[0])),
        'and each is in the log',
      );
      assert.equal(log.length, after.length);
      const metrics = await (await fetch(gateway.metricsUrl)).text();
      assert.match(metrics, /^matrix_kafka_producer_replacements_total\{client="gateway"\} [1-9]/m);
    } finally {
      await Promise.all([gateway.stop(), consumer.stop()]);
    }
  });

  it('drains a backlog of small and 60 kB events in one long-ID room, built while no consumer ran', async () => {
    // Without backpressure (as a gateway of an older version builds it during an upgrade): this gateway would
    // refuse new sends once the stall shows, and the test needs every command in the log.
    const env = isolatedEnv({
      KAFKA_COMMAND_PARTITIONS: '1',
      KAFKA_EVENT_PARTITIONS: '1',
      SEND_TIMEOUT_MS: '300',
      BACKPRESSURE_POLL_MS: '0',
    });
    const txns: Transaction[] = Array.from({ length: 2600 }, (_, i) => ({
      token: [TEST_USERS.alice, TEST_USERS.bob][i % 2].token,
      roomId: LONG_ROOM,
      txnId: `backlog-${i}`,
      sends: 1,
      // Small events are where the event log's records outgrow the commands (the room ID twice, headers).
      ...(i % 130 === 0 ? { content: LARGE } : {}),
    }));
    const gateway = await AppProcess.start('gateway', env);
    let consumer: AppProcess | undefined;
    try {
      // No consumer yet: every command is published, and every client is told 503 and goes away for now.
      const first = await runLoad(() => gateway.url, txns, { concurrency: 100, maxAttempts: 1 });
      assert.deepEqual(new Set(first.flatMap((o) => o.failures.map((f) => f.slice(0, 3)))), new Set(['503']));
      const backlog = await commandLag(env);
      assert.ok(backlog >= txns.length, `${backlog} commands wait in the commands topic`);

      consumer = await AppProcess.start('consumer', env);
      const deadline = Date.now() + 120_000;
      let lag = backlog;
      while ((lag = await commandLag(env)) > 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(lag, 0, `the consumer drained the backlog (still ${lag} behind)`);

      // The clients come back and retry: each gets the event the backlog made of its first attempt.
      const retried = await runLoad(() => gateway.url, txns, { concurrency: 50 });
      await assertExactlyOnce(env, retried);
    } finally {
      await Promise.all([gateway.stop(), consumer?.stop()]);
    }
  });
});
