import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SEND_COMMAND_VERSION, SendCommand, SendReply } from '@app/contracts';
import { InputBatch } from '@app/kafka';
import { StageHandler } from '../stage/stage-handler';
import { StateBudget } from '../store/state-budget';
import { StateDirectory } from '../store/state-directory';
import { SendStage } from './send-stage';

const REPLY_PREFIX = 'replies.';
const TOPICS = { events: 'events', txns: 'txns', annotations: 'annotations' };
const WINDOW_MS = 60_000;

const command = (txn_id: string, correlation_id = `c-${txn_id}`): SendCommand => ({
  v: SEND_COMMAND_VERSION,
  room_id: '!r:x',
  type: 'm.room.message',
  txn_id,
  scope_hash: 's',
  sender: '@a:x',
  device_id: 'D',
  content: { body: txn_id },
  origin_server_ts: 1,
  correlation_id,
  reply_to: `${REPLY_PREFIX}gateway-1`,
});

let offset = 0;
const batchOf = (...commands: { command: SendCommand; publishedAt?: number }[]): InputBatch => ({
  topic: 'commands',
  partition: 0,
  messages: commands.map(({ command: c, publishedAt }) => ({
    key: null,
    value: Buffer.from(JSON.stringify(c)),
    offset: String(offset++),
    timestamp: String(publishedAt ?? Date.now()),
    attributes: 0,
    headers: {},
  })),
});

function stage(maxEntries = 100) {
  const replies: SendReply[] = [];
  const sentTo: string[] = [];
  const budget = new StateBudget(maxEntries);
  const handler = new StageHandler(new SendStage(TOPICS, WINDOW_MS, REPLY_PREFIX), {
    partitions: 4,
    windowMs: WINDOW_MS,
    deadLetterTopic: 'dlq',
    replyTopicPrefix: REPLY_PREFIX,
    budget,
    directory: new StateDirectory({ root: null, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 0 }),
    group: 'g',
    heldPerSender: 100,
    sendReply: (to, reply) => {
      replies.push(reply);
      sentTo.push(to);
    },
  });
  const state = handler.createState(0);
  const run = (...commands: { command: SendCommand; publishedAt?: number }[]) => {
    const result = handler.processBatch(state, batchOf(...commands));
    result.afterCommit();
    return result;
  };
  return { replies, sentTo, budget, handler, state, run };
}

describe('the send stage', () => {
  it('turns new transactions away with a retryable 503 once the state budget is spent, and still answers retries', () => {
    const { replies, run, budget } = stage(2);
    run({ command: command('t1') }, { command: command('t2') }, { command: command('t3') });
    assert.deepEqual(
      replies.map((r) => r.status),
      [200, 200, 503],
    );
    assert.equal((replies[2].body as { errcode: string }).errcode, 'M_UNKNOWN');
    assert.equal(budget.entries, 2);
    run({ command: command('t1', 'again') }, { command: command('t3', 'later') });
    assert.deepEqual(
      replies.slice(3).map((r) => r.status),
      [200, 503],
      'the retry is answered from memory; t3 waits',
    );
    assert.deepEqual(replies[3].body, replies[0].body);
  });

  it('answers a retry decided while the first send still commits with the first event ID, and forgets an aborted one', () => {
    const { replies, handler, state } = stage();
    const first = handler.processBatch(state, batchOf({ command: command('t1') }));
    const retry = handler.processBatch(state, batchOf({ command: command('t1', 'again') }));
    const other = handler.processBatch(state, batchOf({ command: command('t2') }));
    first.afterCommit();
    retry.afterCommit();
    assert.deepEqual(
      replies.map((r) => r.status),
      [200, 200],
    );
    assert.deepEqual(replies[1].body, replies[0].body, 'the retry got the event ID its first send got');
    other.aborted?.(new Error('not committed'));
    handler.processBatch(state, batchOf({ command: command('t2', 'again') })).afterCommit();
    assert.equal(replies.length, 3);
    assert.equal(replies[2].status, 200, 't2 is decided anew, not from the aborted batch');
    assert.notEqual(
      (replies[2].body as { event_id: string }).event_id,
      (replies[0].body as { event_id: string }).event_id,
    );
  });

  it('gives the budget back when a partition is released', () => {
    const { budget, handler, state, run } = stage(10);
    run({ command: command('t1') });
    assert.equal(budget.entries, 1);
    handler.release(state);
    assert.equal(budget.entries, 0);
  });

  it('never appends a command older than the window: it goes to the dead letters as expired', () => {
    const { replies, run } = stage();
    const result = run(
      { command: command('old'), publishedAt: Date.now() - WINDOW_MS - 1 },
      { command: command('new') },
    );
    const events = result.records.find((r) => r.topic === 'events')?.messages ?? [];
    assert.equal(events.length, 1);
    assert.match(String(events[0].value), /"body":"new"/);
    const dead = result.records.find((r) => r.topic === 'dlq')?.messages ?? [];
    assert.deepEqual(
      dead.map((m) => (m.headers as Record<string, string>).reason),
      ['expired'],
    );
    assert.deepEqual(
      replies.map((r) => r.status),
      [500, 200],
    );
  });
  it('dead-letters a command whose reply_to is outside KAFKA_REPLY_TOPIC_PREFIX, and writes nothing there', () => {
    const { sentTo, run } = stage();
    const result = run(
      { command: { ...command('into-the-log'), reply_to: 'events' } },
      { command: { ...command('prefix-alone'), reply_to: REPLY_PREFIX } },
      { command: { ...command('not-a-topic'), reply_to: `${REPLY_PREFIX}a/b` } },
      { command: command('fine') },
    );
    const events = result.records.find((r) => r.topic === 'events')?.messages ?? [];
    assert.equal(events.length, 1);
    assert.match(String(events[0].value), /"body":"fine"/);
    const dead = result.records.find((r) => r.topic === 'dlq')?.messages ?? [];
    assert.deepEqual(
      dead.map((m) => (m.headers as Record<string, string>).reason),
      Array(3).fill('reply_to outside KAFKA_REPLY_TOPIC_PREFIX'),
    );
    assert.deepEqual(sentTo, [`${REPLY_PREFIX}gateway-1`], 'the one reply goes to a reply topic');
  });
});
