import '@app/kafka'; // before kafkajs: patches its read_committed filter
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { SEND_COMMAND_VERSION } from '@app/contracts';
import { EVENT_ID_PATTERN } from '@app/matrix';
import { readEventLog, readTopic } from './support/event-log';
import { sendEvent } from './support/matrix-client';
import { commandPartition, txnIdOnAnotherPartition } from './support/partitions';
import { AppProcess, Pipeline, startPipeline, TEST_USERS } from './support/pipeline';

const { alice, aliceRefreshed, alicePhone, bob } = TEST_USERS;
const message = (body: string) => ({ msgtype: 'm.text', body });

describe('exactly-once transactions through a real broker', () => {
  let pipeline: Pipeline;
  let url: string;
  before(async () => {
    pipeline = await startPipeline();
    url = pipeline.gateway.url;
  });
  after(async () => {
    await pipeline?.stop();
  });

  it('gives the same txnId in two rooms two events, and the same room and txnId with another event type another event', async () => {
    const a = await sendEvent(url, alice.token, '!one:test.local', 'm.room.message', 'shared-txn', message('a'));
    const b = await sendEvent(url, alice.token, '!two:test.local', 'm.room.message', 'shared-txn', message('b'));
    const c = await sendEvent(url, alice.token, '!one:test.local', 'com.example.other', 'shared-txn', message('c'));
    assert.deepEqual([a.status, b.status, c.status], [200, 200, 200]);
    assert.equal(new Set([a.body.event_id, b.body.event_id, c.body.event_id]).size, 3);
  });

  it('gives the same event to a retry on a new token for the same device, and another event to another device', async () => {
    const first = await sendEvent(
      url,
      alice.token,
      '!dev:test.local',
      'm.room.message',
      'device-txn',
      message('first'),
    );
    const refreshed = await sendEvent(
      url,
      aliceRefreshed.token,
      '!dev:test.local',
      'm.room.message',
      'device-txn',
      message('retried'),
    );
    const phone = await sendEvent(
      url,
      alicePhone.token,
      '!dev:test.local',
      'm.room.message',
      'device-txn',
      message('phone'),
    );
    assert.equal(first.status, 200);
    assert.equal(refreshed.body.event_id, first.body.event_id);
    assert.equal(phone.status, 200);
    assert.notEqual(phone.body.event_id, first.body.event_id);
  });

  it('turns 50 concurrent identical PUTs into one event, and gives all of them its ID', async () => {
    const room = `!burst-${randomUUID()}:test.local`;
    const results = await Promise.all(
      Array.from({ length: 50 }, () => sendEvent(url, bob.token, room, 'm.room.message', 'burst-txn', message('once'))),
    );
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
    const ids = new Set(results.map((r) => r.body.event_id));
    assert.equal(ids.size, 1);
    const log = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
      keep: (event) => event.room_id === room,
      atLeast: 1,
    });
    assert.deepEqual(
      log.map((e) => e.event.event_id),
      [...ids],
    );
  });

  it('rejects a second identical annotation from another txnId and partition, repeats both outcomes, and allows it again once redacted', async () => {
    const partitions = Number(pipeline.env.KAFKA_COMMAND_PARTITIONS);
    const room = `!reactions-${randomUUID()}:test.local`;
    const target = await sendEvent(
      url,
      bob.token,
      room,
      'm.room.message',
      `target-${randomUUID()}`,
      message('react to me'),
    );
    const reaction = { 'm.relates_to': { rel_type: 'm.annotation', event_id: target.body.event_id, key: '👍' } };
    const firstTxn = `react-${randomUUID()}`;
    const secondTxn = txnIdOnAnotherPartition(
      alice,
      `react-${randomUUID()}`,
      commandPartition(alice, firstTxn, partitions),
      partitions,
    );

    const first = await sendEvent(url, alice.token, room, 'm.reaction', firstTxn, reaction);
    assert.equal(first.status, 200);
    assert.match(String(first.body.event_id), EVENT_ID_PATTERN);
    const second = await sendEvent(url, alice.token, room, 'm.reaction', secondTxn, reaction);
    assert.equal(second.status, 400);
    assert.equal(second.body.errcode, 'M_DUPLICATE_ANNOTATION');

    // Another key, or another sender, is another annotation.
    const otherKey = await sendEvent(url, alice.token, room, 'm.reaction', `react-${randomUUID()}`, {
      'm.relates_to': { ...reaction['m.relates_to'], key: '🎉' },
    });
    const otherSender = await sendEvent(url, bob.token, room, 'm.reaction', `react-${randomUUID()}`, reaction);
    assert.deepEqual([otherKey.status, otherSender.status], [200, 200]);

    const firstAgain = await sendEvent(url, alice.token, room, 'm.reaction', firstTxn, reaction);
    assert.deepEqual(firstAgain.body, first.body);
    const secondAgain = await sendEvent(url, alice.token, room, 'm.reaction', secondTxn, reaction);
    assert.equal(secondAgain.body.errcode, 'M_DUPLICATE_ANNOTATION');

    const redaction = await sendEvent(url, alice.token, room, 'm.room.redaction', `redact-${randomUUID()}`, {
      redacts: first.body.event_id,
    });
    assert.equal(redaction.status, 200);
    const third = await sendEvent(url, alice.token, room, 'm.reaction', `react-${randomUUID()}`, reaction);
    assert.equal(third.status, 200);
    assert.notEqual(third.body.event_id, first.body.event_id);
    // The rejected transaction stays rejected: a definitive outcome is remembered.
    const secondLater = await sendEvent(url, alice.token, room, 'm.reaction', secondTxn, reaction);
    assert.equal(secondLater.body.errcode, 'M_DUPLICATE_ANNOTATION');

    const log = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
      keep: (event) => event.room_id === room,
    });
    const reactions = log.filter((e) => e.event.type === 'm.reaction').map((e) => e.event.event_id);
    assert.deepEqual(
      new Set(reactions),
      new Set([first.body.event_id, otherKey.body.event_id, otherSender.body.event_id, third.body.event_id]),
    );
    assert.equal(reactions.length, 4);
  });

  it('sets an undecodable command aside in the dead-letter topic, answers its sender, and keeps the partition moving', async () => {
    const kafka = new Kafka({ brokers: pipeline.env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const producer = kafka.producer();
    const replyTopic = `${pipeline.env.KAFKA_REPLY_TOPIC_PREFIX}poison-test`;
    await Promise.all([admin.connect(), producer.connect()]);
    await admin.createTopics({ topics: [{ topic: replyTopic, numPartitions: 1 }], waitForLeaders: true });
    const txnId = `poison-${randomUUID()}`;
    const key = `nobody:${txnId}`;
    const correlationId = randomUUID();
    await producer.send({
      topic: pipeline.env.KAFKA_TOPIC_COMMANDS,
      messages: [
        {
          key,
          value: JSON.stringify({ v: SEND_COMMAND_VERSION + 99, correlation_id: correlationId, reply_to: replyTopic }),
        },
      ],
    });
    await producer.send({ topic: pipeline.env.KAFKA_TOPIC_COMMANDS, messages: [{ key, value: '{not json' }] });
    await Promise.all([admin.disconnect(), producer.disconnect()]);

    const [reply] = await readTopic(pipeline.env.KAFKA_BROKERS, replyTopic, { atLeast: 1 });
    assert.deepEqual(JSON.parse(reply.value), {
      correlation_id: correlationId,
      status: 500,
      body: { errcode: 'M_UNKNOWN', error: 'The server could not process this event' },
    });
    const dead = await readTopic(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_DEAD_LETTERS, { atLeast: 2 });
    assert.deepEqual(
      dead.map((d) => d.headers.reason),
      [`unknown version ${SEND_COMMAND_VERSION + 99}`, 'not JSON'],
    );
    // Sends on every partition still go through.
    for (let i = 0; i < 8; i++) {
      const res = await sendEvent(
        url,
        alice.token,
        '!after-poison:test.local',
        'm.room.message',
        `after-poison-${i}-${randomUUID()}`,
        message('still flowing'),
      );
      assert.equal(res.status, 200);
    }
  });

  it('keeps each room in order in the event log: one partition per room, in the order the sends were answered', async () => {
    const rooms = [`!order-a-${randomUUID()}:test.local`, `!order-b-${randomUUID()}:test.local`];
    const answered = new Map<string, string[]>(rooms.map((room) => [room, []]));
    for (let i = 0; i < 30; i++) {
      const room = rooms[i % 2];
      // Different senders and txnIds land on different command partitions, so order across them is not free.
      const res = await sendEvent(
        url,
        [alice, bob, alicePhone][i % 3].token,
        room,
        'm.room.message',
        `order-${randomUUID()}`,
        message(`${i}`),
      );
      assert.equal(res.status, 200);
      answered.get(room)!.push(String(res.body.event_id));
    }
    const log = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
      keep: (event) => rooms.includes(event.room_id),
      atLeast: 30,
    });
    for (const room of rooms) {
      const entries = log
        .filter((e) => e.event.room_id === room)
        .sort((x, y) => Number(BigInt(x.offset) - BigInt(y.offset)));
      assert.equal(new Set(entries.map((e) => e.partition)).size, 1, `${room} is in one partition`);
      assert.deepEqual(
        entries.map((e) => e.event.event_id),
        answered.get(room),
        `${room} in the order of its answers`,
      );
    }
  });

  it('never appends a command older than the dedup window: it is dead-lettered as expired', async () => {
    const kafka = new Kafka({ brokers: pipeline.env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
    const producer = kafka.producer();
    await producer.connect();
    const txnId = `expired-${randomUUID()}`;
    const room = `!expired-${randomUUID()}:test.local`;
    const command = {
      v: SEND_COMMAND_VERSION,
      room_id: room,
      type: 'm.room.message',
      txn_id: txnId,
      scope_hash: 'stale-scope',
      sender: alice.user_id,
      device_id: null,
      content: message('from the day before yesterday'),
      origin_server_ts: Date.now() - 2 * 86_400_000,
      correlation_id: randomUUID(),
      reply_to: `${pipeline.env.KAFKA_REPLY_TOPIC_PREFIX}nobody`,
    };
    // Published two days ago (a consumer group whose offsets expired would meet such a record): past the 24 h window.
    await producer.send({
      topic: pipeline.env.KAFKA_TOPIC_COMMANDS,
      messages: [
        { key: `stale-scope:${txnId}`, value: JSON.stringify(command), timestamp: String(Date.now() - 2 * 86_400_000) },
      ],
    });
    await producer.disconnect();
    const dead = await readTopic(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_DEAD_LETTERS, {
      atLeast: 1,
      keep: (record) => record.key === `stale-scope:${txnId}`,
    });
    assert.equal(dead[0].headers.reason, 'expired');
    // Sends go on, and the expired command is not in the log.
    const after = await sendEvent(url, alice.token, room, 'm.room.message', `after-${txnId}`, message('fresh'));
    assert.equal(after.status, 200);
    const log = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
      keep: (event) => event.room_id === room,
      atLeast: 1,
    });
    assert.deepEqual(
      log.map((e) => e.event.event_id),
      [after.body.event_id],
    );
  });

  it('remembers transactions and held annotations across a consumer restart and a crash: the state is rebuilt from Kafka', async () => {
    const before = await sendEvent(
      url,
      alice.token,
      '!restart:test.local',
      'm.room.message',
      'restart-txn',
      message('before'),
    );
    assert.equal(before.status, 200);
    const reaction = {
      'm.relates_to': { rel_type: 'm.annotation', event_id: String(before.body.event_id), key: '🔁' },
    };
    const held = await sendEvent(url, bob.token, '!restart:test.local', 'm.reaction', 'restart-reaction', reaction);
    assert.equal(held.status, 200);
    const annotationSurvives = async (): Promise<void> => {
      const again = await retryUntil200(() =>
        sendEvent(url, bob.token, '!restart:test.local', 'm.reaction', 'restart-reaction', reaction),
      );
      assert.deepEqual(again.body, held.body, 'the annotation transaction is remembered');
      const duplicate = await retryUntil200(() =>
        sendEvent(url, bob.token, '!restart:test.local', 'm.reaction', `restart-${randomUUID()}`, reaction),
      );
      assert.equal(duplicate.body.errcode, 'M_DUPLICATE_ANNOTATION', 'the annotation is still held');
    };

    await pipeline.consumer.stop();
    pipeline.consumer = await AppProcess.start('consumer', pipeline.env);
    const afterRestart = await sendEvent(
      url,
      alice.token,
      '!restart:test.local',
      'm.room.message',
      'restart-txn',
      message('after restart'),
    );
    assert.deepEqual(afterRestart.body, before.body);
    await annotationSurvives();

    await pipeline.consumer.kill();
    pipeline.consumer = await AppProcess.start('consumer', pipeline.env);
    const afterCrash = await retryUntil200(() =>
      sendEvent(url, alice.token, '!restart:test.local', 'm.room.message', 'restart-txn', message('after crash')),
    );
    assert.deepEqual(afterCrash.body, before.body);
    await annotationSurvives();
  });
});

/** A client's retry loop: the same request again while the answer is a retryable 503. */
async function retryUntil200<T extends { status: number }>(send: () => Promise<T>, attempts = 20): Promise<T> {
  for (let i = 1; ; i++) {
    const res = await send();
    if (res.status !== 503 || i >= attempts) return res;
    await new Promise((done) => setTimeout(done, 500));
  }
}

describe('the state budget (STATE_MAX_ENTRIES)', () => {
  let pipeline: Pipeline;
  after(async () => {
    await pipeline?.stop();
  });

  it('turns new transactions away with a retryable 503 when spent, answers retries, and restores past it', async () => {
    pipeline = await startPipeline({ STATE_MAX_ENTRIES: '4' });
    const url = pipeline.gateway.url;
    const room = `!budget-${randomUUID()}:test.local`;
    const first = [];
    for (let i = 0; i < 4; i++)
      first.push(await sendEvent(url, bob.token, room, 'm.room.message', `budget-${i}`, message(`${i}`)));
    assert.deepEqual(
      first.map((r) => r.status),
      [200, 200, 200, 200],
    );
    const refused = await sendEvent(url, bob.token, room, 'm.room.message', 'budget-4', message('4'));
    assert.equal(refused.status, 503);
    assert.equal(refused.body.errcode, 'M_UNKNOWN');
    assert.ok(Number(refused.headers.get('retry-after')) >= 1, 'Retry-After');
    const retry = await sendEvent(url, bob.token, room, 'm.room.message', 'budget-0', message('again'));
    assert.deepEqual(retry.body, first[0].body, 'remembered transactions are still answered');

    // A consumer with a smaller budget than what the changelog holds still restores it all, and becomes ready.
    await pipeline.consumer.stop();
    pipeline.consumer = await AppProcess.start('consumer', { ...pipeline.env, STATE_MAX_ENTRIES: '2' });
    const afterRestart = await retryUntil200(() =>
      sendEvent(url, bob.token, room, 'm.room.message', 'budget-3', message('again')),
    );
    assert.deepEqual(afterRestart.body, first[3].body);
    const metrics = await (await fetch(pipeline.consumer.metricsUrl)).text();
    assert.match(metrics, /^matrix_consumer_state_entries\{stage="send"\} 4$/m);
    assert.match(metrics, /^matrix_consumer_state_disk_bytes\{stage="send"\} [1-9]\d*$/m);
    assert.match(metrics, /^matrix_consumer_state_budget_entries 2$/m);
  });
});
