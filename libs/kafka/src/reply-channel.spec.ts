import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Logger } from '@nestjs/common';
import {
  Admin,
  ConsumerConfig,
  ConsumerEvents,
  ConsumerRunConfig,
  ConsumerSubscribeTopic,
  EachBatchPayload,
  InstrumentationEvent,
  KafkaMessage,
  ValueOf,
} from 'kafkajs';
import { isReplyTopic, newReplyTopic, ReplyChannel, ReplyReaderSource, ReplyTimeout } from './reply-channel';

Logger.overrideLogger(false); // the revival's back-off warnings

describe('reply topic names', () => {
  it('tells a gateway instance’s reply topic from any other topic with the same prefix', () => {
    const topic = newReplyTopic('matrix.send.replies.', 'gw-7f9c.example.org', 4242);
    assert.match(topic, /^matrix\.send\.replies\.gw-7f9c-example-org-4242-[0-9a-f]{8}$/);
    assert.equal(isReplyTopic('matrix.send.replies.', topic), true);
    // A prefix set too wide must not make the orphan collector take the pipeline's topics for reply topics.
    for (const other of ['matrix.send.commands', 'matrix.send.txns', 'matrix.room.events', 'matrix.send.dead-letters'])
      assert.equal(isReplyTopic('matrix.', other), false, other);
    assert.equal(isReplyTopic('matrix.send.replies.', `${topic}.reader`), false);
    assert.equal(isReplyTopic('other.', topic), false);
  });
});

interface Reply {
  correlation_id: string;
  body: string;
}

const EVENTS: Pick<ConsumerEvents, 'GROUP_JOIN' | 'HEARTBEAT' | 'CRASH'> = {
  GROUP_JOIN: 'consumer.group_join',
  HEARTBEAT: 'consumer.heartbeat',
  CRASH: 'consumer.crash',
};

/** A kafkajs consumer whose group events and batches the test emits. */
class FakeReader {
  readonly events = EVENTS;
  readonly calls: string[] = [];
  config?: ConsumerConfig;
  subscription?: ConsumerSubscribeTopic;
  private eachBatch?: ConsumerRunConfig['eachBatch'];
  /** Each takes one kind of event (kafkajs types each listener by its event): `never` stands for any of them. */
  private readonly listeners = new Map<string, ((event: InstrumentationEvent<never>) => void)[]>();

  on(eventName: ValueOf<ConsumerEvents>, listener: (event: InstrumentationEvent<never>) => void) {
    this.listeners.set(eventName, [...(this.listeners.get(eventName) ?? []), listener]);
    return () => undefined;
  }

  emit(eventName: ValueOf<ConsumerEvents>, payload: unknown = {}): void {
    for (const listener of this.listeners.get(eventName) ?? [])
      listener({ id: '0', type: eventName, timestamp: Date.now(), payload: payload as never });
  }

  async connect(): Promise<void> {
    this.calls.push('connect');
  }
  async subscribe(subscription: ConsumerSubscribeTopic): Promise<void> {
    this.subscription = subscription;
    this.calls.push('subscribe');
  }
  async run(config?: ConsumerRunConfig): Promise<void> {
    this.eachBatch = config?.eachBatch;
    this.calls.push('run');
  }
  async disconnect(): Promise<void> {
    this.calls.push('disconnect');
  }

  /** Hands the reader one batch of records with these values, as kafkajs does after a fetch. */
  async deliver(...values: (string | null)[]): Promise<void> {
    const messages = values.map((value, offset): KafkaMessage => ({
      key: null,
      value: value === null ? null : Buffer.from(value),
      timestamp: '0',
      attributes: 0,
      offset: String(offset),
      headers: {},
    }));
    const payload: EachBatchPayload = {
      batch: {
        topic: 'replies',
        partition: 0,
        highWatermark: String(messages.length),
        messages,
        isEmpty: () => messages.length === 0,
        firstOffset: () => '0',
        lastOffset: () => String(messages.length - 1),
        offsetLag: () => '0',
        offsetLagLow: () => '0',
      },
      resolveOffset: () => undefined,
      heartbeat: async () => undefined,
      pause: () => () => undefined,
      commitOffsetsIfNecessary: async () => undefined,
      uncommittedOffsets: () => ({ topics: [] }),
      isRunning: () => true,
      isStale: () => false,
    };
    assert.ok(this.eachBatch, 'the reader runs');
    await this.eachBatch(payload);
  }
}

class FakeAdmin implements Pick<Admin, 'createTopics' | 'deleteTopics' | 'deleteGroups'> {
  readonly calls: { api: string; args: unknown }[] = [];
  refuseDeletes = false;

  async createTopics(args: Parameters<Admin['createTopics']>[0]): Promise<boolean> {
    this.calls.push({ api: 'createTopics', args });
    return true;
  }
  async deleteTopics(args: Parameters<Admin['deleteTopics']>[0]): Promise<void> {
    this.calls.push({ api: 'deleteTopics', args });
    if (this.refuseDeletes) throw new Error('the broker is gone');
  }
  async deleteGroups(groupIds: string[]): ReturnType<Admin['deleteGroups']> {
    this.calls.push({ api: 'deleteGroups', args: groupIds });
    if (this.refuseDeletes) throw new Error('the broker is gone');
    return [];
  }
}

const decode = (value: Buffer | null): Reply | null => {
  try {
    const reply = JSON.parse(value?.toString() ?? 'null') as Reply | null;
    return typeof reply?.correlation_id === 'string' ? reply : null;
  } catch {
    return null;
  }
};
const reply = (correlationId: string, body = `answer to ${correlationId}`): string =>
  JSON.stringify({ correlation_id: correlationId, body });

/** A wait's promise, watched: its outcome can be asserted while it may still be pending. */
function watch(promise: Promise<Reply>): { state: 'pending' | 'replied' | 'failed'; reply?: Reply; error?: unknown } {
  const watched: { state: 'pending' | 'replied' | 'failed'; reply?: Reply; error?: unknown } = { state: 'pending' };
  promise.then(
    (reply) => Object.assign(watched, { state: 'replied', reply }),
    (error: unknown) => Object.assign(watched, { state: 'failed', error }),
  );
  return watched;
}
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe('the reply channel', () => {
  let reader: FakeReader;
  let admin: FakeAdmin;
  let channel: ReplyChannel<Reply>;
  let unmatched: Reply[];
  let fatal: Error[];

  /** A channel whose reader has joined its group and runs. */
  async function started(): Promise<ReplyChannel<Reply>> {
    reader = new FakeReader();
    admin = new FakeAdmin();
    unmatched = [];
    fatal = [];
    const kafka: ReplyReaderSource = {
      consumer: (config) => ((reader.config = config), reader),
    };
    channel = new ReplyChannel(kafka, admin, 'replies.gw-1-0badcafe', decode, (error) => fatal.push(error));
    channel.unmatched = (reply) => unmatched.push(reply);
    const starting = channel.start(3);
    await settle();
    reader.emit(EVENTS.GROUP_JOIN);
    await starting;
    return channel;
  }

  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    mock.method(performance, 'now', () => Date.now());
  });
  afterEach(() => {
    mock.timers.reset();
    mock.restoreAll();
  });

  it('gives each reply to the waiter of its correlation id only, whatever the order and batching of replies', async () => {
    await started();
    const waits = ['a', 'b', 'c'].map((id) => watch(channel.wait(id, 30_000).reply));
    await reader.deliver(reply('c'), reply('a'));
    await settle();
    assert.deepEqual(
      waits.map((wait) => wait.state),
      ['replied', 'pending', 'replied'],
    );
    await reader.deliver(reply('b'));
    await settle();
    assert.deepEqual(
      waits.map((wait) => wait.reply),
      ['a', 'b', 'c'].map((id) => ({ correlation_id: id, body: `answer to ${id}` })),
    );
    assert.deepEqual(unmatched, []);
  });

  it('skips a record it cannot read and goes on with the rest of the batch', async () => {
    await started();
    const wait = watch(channel.wait('a', 30_000).reply);
    await reader.deliver('{not json', null, JSON.stringify({ body: 'no correlation id' }), reply('a'));
    await settle();
    assert.equal(wait.state, 'replied');
  });

  it('fails a wait with ReplyTimeout at its deadline, not before, and hands its late reply to `unmatched`', async () => {
    await started();
    const timeoutMs = 2000;
    const late = watch(channel.wait('late', timeoutMs).reply);
    const onTime = watch(channel.wait('on-time', 2 * timeoutMs).reply);
    mock.timers.tick(timeoutMs - 1);
    await settle();
    assert.equal(late.state, 'pending');
    mock.timers.tick(1);
    await settle();
    assert.ok(late.error instanceof ReplyTimeout, String(late.error));
    assert.equal(onTime.state, 'pending', 'another wait keeps its own deadline');
    await reader.deliver(reply('late'), reply('on-time'));
    await settle();
    assert.deepEqual(unmatched, [{ correlation_id: 'late', body: 'answer to late' }]);
    assert.equal(onTime.state, 'replied');
  });

  it('gives a reply delivered twice (a redelivered batch) to its waiter once, and the second to `unmatched`', async () => {
    await started();
    const wait = watch(channel.wait('a', 30_000).reply);
    await reader.deliver(reply('a', 'first'), reply('a', 'second'));
    await settle();
    assert.deepEqual(wait.reply, { correlation_id: 'a', body: 'first' });
    assert.deepEqual(unmatched, [{ correlation_id: 'a', body: 'second' }]);
  });

  it('forgets a cancelled wait: no timeout fires for it, and its reply goes to `unmatched`', async () => {
    await started();
    const { reply: promise, cancel } = channel.wait('a', 1000);
    const wait = watch(promise);
    cancel();
    mock.timers.tick(5000);
    await settle();
    assert.equal(wait.state, 'pending', 'its owner gave up already: nothing more to tell it');
    await reader.deliver(reply('a'));
    assert.deepEqual(unmatched, [{ correlation_id: 'a', body: 'answer to a' }]);
  });

  it('is ready once its reader joined the group, and no longer after a crash or once Kafka has not heard from it for its session', async () => {
    await started();
    assert.equal(channel.isReady, true);
    const sessionMs = reader.config!.sessionTimeout!;
    mock.timers.tick(sessionMs - 1);
    assert.equal(channel.isReady, true);
    reader.emit(EVENTS.HEARTBEAT);
    mock.timers.tick(sessionMs - 1);
    assert.equal(channel.isReady, true, 'a heartbeat counts');
    mock.timers.tick(1);
    assert.equal(channel.isReady, false, 'a session without a heartbeat: the group may have dropped it');
    reader.emit(EVENTS.HEARTBEAT);
    assert.equal(channel.isReady, true);
    reader.emit(EVENTS.CRASH, { error: new Error('lost'), groupId: 'g', restart: true });
    assert.equal(channel.isReady, false);
  });

  it('creates its topic and starts reading it from the beginning, and is started only once its reader joined the group', async () => {
    reader = new FakeReader();
    admin = new FakeAdmin();
    const topic = 'replies.gw-1-0badcafe';
    channel = new ReplyChannel({ consumer: () => reader }, admin, topic, decode, () => assert.fail('fatal'));
    let started = false;
    const starting = channel.start(3).then(() => (started = true));
    await settle();
    assert.deepEqual(reader.calls, ['connect', 'subscribe', 'run']);
    assert.deepEqual(reader.subscription, { topic, fromBeginning: true }, 'a reply written before the join is read');
    assert.equal(started, false);
    reader.emit(EVENTS.GROUP_JOIN);
    await starting;
    const [create] = admin.calls;
    const { topics } = create.args as Parameters<Admin['createTopics']>[0];
    assert.deepEqual(
      [create.api, topics[0].topic, topics[0].numPartitions, topics[0].replicationFactor],
      ['createTopics', topic, 1, 3],
    );
  });

  it('starts its reader again, with back-off, after kafkajs stopped it while Kafka looked out of reach, and gives up after anything else', async () => {
    await started();
    const unreachable = Object.assign(new Error('Connection refused'), { name: 'KafkaJSConnectionError' });
    reader.emit(EVENTS.CRASH, { error: unreachable, groupId: 'g', restart: false });
    mock.timers.tick(499);
    await settle();
    assert.equal(reader.calls.filter((call) => call === 'run').length, 1);
    mock.timers.tick(1);
    await settle();
    assert.equal(reader.calls.filter((call) => call === 'run').length, 2, 'started again after 500 ms');
    assert.equal(fatal.length, 0);
    reader.emit(EVENTS.CRASH, { error: new TypeError('a defect'), groupId: 'g', restart: false });
    assert.equal(fatal.length, 1);
    assert.match(fatal[0].message, /the reply reader stopped for good: a defect/);
  });

  it('on stop, stops reading, deletes its topic and its group even when a deletion fails, and starts nothing again', async () => {
    await started();
    const pending = watch(channel.wait('a', 1000).reply);
    admin.refuseDeletes = true;
    await channel.stop();
    assert.equal(channel.isReady, false);
    assert.equal(reader.calls.at(-1), 'disconnect');
    assert.deepEqual(
      admin.calls.slice(1).map(({ api, args }) => [api, args]),
      [
        ['deleteTopics', { topics: [channel.topic], timeout: 5000 }],
        ['deleteGroups', [`${channel.topic}.reader`]],
      ],
    );
    const unreachable = Object.assign(new Error('Connection closed'), { name: 'KafkaJSConnectionClosedError' });
    reader.emit(EVENTS.CRASH, { error: unreachable, groupId: 'g', restart: false });
    mock.timers.tick(60_000);
    await settle();
    assert.equal(reader.calls.filter((call) => call === 'run').length, 1, 'a stopped channel stays stopped');
    assert.ok(pending.error instanceof ReplyTimeout, 'a wait pending at stop still ends, at its deadline');
  });
});

describe('the reply channel’s waits, on real timers', () => {
  it('leave no timer behind once replied to, cancelled or timed out (each would hold the process up to its timeout)', async () => {
    const reader = new FakeReader();
    const channel = new ReplyChannel<Reply>({ consumer: () => reader }, new FakeAdmin(), 'r', decode, () => undefined);
    const starting = channel.start(1);
    await settle();
    reader.emit(EVENTS.GROUP_JOIN);
    await starting;
    const timers = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
    const before = timers();
    const replied = channel.wait('replied', 60_000).reply;
    const cancelled = channel.wait('cancelled', 60_000);
    const timedOut = channel.wait('timed-out', 1).reply;
    assert.equal(timers(), before + 3, 'the premise: each wait holds a timer');
    await reader.deliver(reply('replied'));
    await replied;
    cancelled.cancel();
    await assert.rejects(timedOut, ReplyTimeout);
    assert.equal(timers(), before);
  });
});
