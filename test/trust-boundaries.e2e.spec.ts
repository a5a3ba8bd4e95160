import '@app/kafka'; // before kafkajs: patches its read_committed filter
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel, Producer } from 'kafkajs';
import { AnnotationStageRecord, SEND_COMMAND_VERSION, SendCommand } from '@app/contracts';
import { readTopic } from './support/event-log';
import { isolatedEnv, Pipeline, runToExit, startPipeline, TEST_USERS } from './support/pipeline';

/** What anything with write access to the commands or annotations topic can put there. */
describe('trust boundaries: records the consumer does not trust', () => {
  let pipeline: Pipeline;
  let kafka: Kafka;
  let producer: Producer;
  let replyTopic: string;
  let otherTopic: string;

  const command = (room: string, reply_to: string): SendCommand => ({
    v: SEND_COMMAND_VERSION,
    room_id: room,
    type: 'm.room.message',
    txn_id: randomUUID(),
    scope_hash: 'forged-scope',
    sender: TEST_USERS.alice.user_id,
    device_id: null,
    content: { msgtype: 'm.text', body: 'forged' },
    origin_server_ts: Date.now(),
    correlation_id: randomUUID(),
    reply_to,
  });

  before(async () => {
    pipeline = await startPipeline();
    kafka = new Kafka({ brokers: pipeline.env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
    producer = kafka.producer();
    replyTopic = `${pipeline.env.KAFKA_REPLY_TOPIC_PREFIX}trust-test`;
    otherTopic = `${pipeline.env.KAFKA_TOPIC_COMMANDS}.not-a-reply-topic`;
    const admin = kafka.admin();
    await Promise.all([admin.connect(), producer.connect()]);
    await admin.createTopics({
      topics: [replyTopic, otherTopic].map((topic) => ({ topic, numPartitions: 1 })),
      waitForLeaders: true,
    });
    await admin.disconnect();
  });
  after(async () => {
    await producer?.disconnect();
    await pipeline?.stop();
  });

  it('dead-letters a command whose reply_to is outside KAFKA_REPLY_TOPIC_PREFIX, and writes nothing into that topic', async () => {
    const room = `!hijack-${randomUUID()}:test.local`;
    const intoTheLog = command(room, pipeline.env.KAFKA_TOPIC_EVENTS);
    const intoAnother = command(room, otherTopic);
    const sound = command(`!sound-${randomUUID()}:test.local`, replyTopic);
    // One partition, in this order: the sound command's reply comes after whatever the others caused.
    await producer.send({
      topic: pipeline.env.KAFKA_TOPIC_COMMANDS,
      messages: [intoTheLog, intoAnother, sound].map((c) => ({
        key: `forged-scope:${c.txn_id}`,
        value: JSON.stringify(c),
        partition: 0,
      })),
    });
    const [reply] = await readTopic(pipeline.env.KAFKA_BROKERS, replyTopic, { atLeast: 1 });
    assert.equal(
      (JSON.parse(reply.value) as { status: number }).status,
      200,
      `premise: a sound forged command is answered (${reply.value})`,
    );

    const dead = await readTopic(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_DEAD_LETTERS, {
      keep: (record) => [intoTheLog, intoAnother].some((c) => record.key === `forged-scope:${c.txn_id}`),
      atLeast: 2,
    });
    assert.deepEqual(
      dead.map((d) => d.headers.reason),
      ['reply_to outside KAFKA_REPLY_TOPIC_PREFIX', 'reply_to outside KAFKA_REPLY_TOPIC_PREFIX'],
    );
    const log = await readTopic(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS);
    assert.ok(log.length > 0, 'premise: the sound command is in the event log');
    for (const record of log) {
      const value = JSON.parse(record.value) as Record<string, unknown>;
      assert.equal(typeof value.event_id, 'string', `only events in the event log: ${record.value}`);
      assert.notEqual(value.room_id, room, 'the dead-lettered commands were not appended');
    }
    assert.deepEqual(await readTopic(pipeline.env.KAFKA_BROKERS, otherTopic), [], 'no reply in another topic');
  });

  it('dead-letters an annotation-stage record whose command would not pass as a command, and appends nothing', async () => {
    const room = `!forged-annotation-${randomUUID()}:test.local`;
    const annotation = (c: Partial<SendCommand>): AnnotationStageRecord => ({
      kind: 'annotation',
      annotation_id: randomUUID(),
      txn_identity: randomUUID(),
      command: c as SendCommand,
    });
    const typeless: Partial<SendCommand> = command(room, replyTopic);
    delete typeless.type;
    const records = [
      annotation(typeless),
      annotation({ ...command(room, replyTopic), content: 'not an object' as never }),
      annotation(command(room, pipeline.env.KAFKA_TOPIC_EVENTS)),
    ];
    await producer.send({
      topic: pipeline.env.KAFKA_TOPIC_ANNOTATIONS,
      messages: records.map((record, i) => ({
        key: `forged-${i}-${room}`,
        value: JSON.stringify(record),
        partition: 0,
      })),
    });
    const dead = await readTopic(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_DEAD_LETTERS, {
      keep: (record) => record.key?.endsWith(room) ?? false,
      atLeast: 3,
    });
    assert.deepEqual(dead.map((d) => d.headers.reason).sort(), [
      'command: content is not an object',
      'command: missing type',
      'command: reply_to outside KAFKA_REPLY_TOPIC_PREFIX',
    ]);
    const log = await readTopic(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
      keep: (record) => record.key === room,
    });
    assert.deepEqual(log, [], 'nothing of that room in the event log');
  });

  it('refuses to start with a reply topic prefix that other topics of the pipeline start with', async () => {
    const env = isolatedEnv();
    const prefix = env.KAFKA_TOPIC_COMMANDS.slice(0, env.KAFKA_TOPIC_COMMANDS.indexOf('.') + 1);
    const result = await runToExit('consumer', { ...env, KAFKA_REPLY_TOPIC_PREFIX: prefix });
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^consumer: invalid configuration: KAFKA_REPLY_TOPIC_PREFIX: expected a prefix of reply topics only, not of KAFKA_TOPIC_COMMANDS, /,
    );
  });
});
