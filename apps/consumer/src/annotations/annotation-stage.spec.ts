import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AnnotationStageRecord, SEND_COMMAND_VERSION, SendCommand, SendReply } from '@app/contracts';
import { InputBatch } from '@app/kafka';
import { ReplySender } from '../stage/record-collector';
import { StageHandler } from '../stage/stage-handler';
import { StateBudget } from '../store/state-budget';
import { StateDirectory } from '../store/state-directory';
import { AnnotationStage } from './annotation-stage';

const REPLY_PREFIX = 'replies.';
const annotationStage = (
  windowMs: number,
  sendReply: ReplySender = () => undefined,
  { heldPerSender = 100, maxHeld = 100 } = {},
) =>
  new StageHandler(new AnnotationStage({ events: 'events', state: 'state' }, windowMs, REPLY_PREFIX), {
    partitions: 1,
    windowMs,
    deadLetterTopic: 'dlq',
    replyTopicPrefix: REPLY_PREFIX,
    budget: new StateBudget(100, Number.MAX_SAFE_INTEGER, maxHeld),
    heldPerSender,
    directory: new StateDirectory({ root: null, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 0 }),
    group: 'g',
    sendReply,
  });

const command = (txn_id: string, correlation_id: string, sender = '@a:x'): SendCommand => ({
  v: SEND_COMMAND_VERSION,
  room_id: '!r:x',
  type: 'm.reaction',
  txn_id,
  scope_hash: 's',
  sender,
  device_id: 'D',
  content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$t', key: 'k' } },
  origin_server_ts: 1,
  correlation_id,
  reply_to: `${REPLY_PREFIX}gateway-1`,
});
const annotation = (txn: string, correlation: string): AnnotationStageRecord => ({
  kind: 'annotation',
  annotation_id: 'A',
  txn_identity: `id-${txn}`,
  command: command(txn, correlation),
});

let offset = 0;
const batchOf = (...records: AnnotationStageRecord[]): InputBatch => ({
  topic: 'annotations',
  partition: 0,
  messages: records.map((record) => ({
    key: null,
    value: Buffer.from(JSON.stringify(record)),
    offset: String(offset++),
    timestamp: String(Date.now()),
    attributes: 0,
    headers: {},
  })),
});

/** An annotation of its own identity (a fresh key), from `sender`. */
const fresh = (txn: string, sender: string): AnnotationStageRecord => ({
  kind: 'annotation',
  annotation_id: `A-${txn}`,
  txn_identity: `id-${txn}`,
  command: command(txn, `c-${txn}`, sender),
});

describe('the annotation stage', () => {
  it('turns a sender past their share of held annotations away with a retryable 503, and others keep theirs', () => {
    const replies: SendReply[] = [];
    const handler = annotationStage(60_000, (_to, reply) => replies.push(reply), { heldPerSender: 2, maxHeld: 3 });
    const state = handler.createState(0);
    handler.processBatch(state, batchOf(fresh('m1', '@mallory:x'), fresh('m2', '@mallory:x'))).afterCommit();
    handler.processBatch(state, batchOf(fresh('m3', '@mallory:x'), fresh('a1', '@alice:x'))).afterCommit();
    assert.deepEqual(
      replies.map((reply) => reply.status),
      [200, 200, 503, 200],
    );
    assert.equal(state.held, 3);
    assert.equal(state.heldOf('@mallory:x'), 2);
    // The bound of all held annotations is spent too: the next one waits, whoever sends it.
    handler.processBatch(state, batchOf(fresh('b1', '@bob:x'))).afterCommit();
    assert.equal(replies[4].status, 503);
    assert.equal(replies[4].body.errcode, 'M_UNKNOWN');
  });

  it('accepts the first annotation, rejects a second from another txn, and repeats each outcome to retries', () => {
    const replies: SendReply[] = [];
    const handler = annotationStage(60_000, (_to, reply) => replies.push(reply));
    const state = handler.createState(0);
    const run = (...records: AnnotationStageRecord[]) => {
      const result = handler.processBatch(state, batchOf(...records));
      result.afterCommit();
      return result;
    };

    const first = run(annotation('t1', 'c1'), annotation('t2', 'c2'));
    assert.equal(first.records.find((r) => r.topic === 'events')?.messages.length, 1);
    const accepted = replies[0];
    assert.equal(accepted.status, 200);
    assert.deepEqual(replies[1], {
      correlation_id: 'c2',
      status: 400,
      body: { errcode: 'M_DUPLICATE_ANNOTATION', error: 'Cannot send the same annotation twice' },
    });

    run(annotation('t1', 'c3'), annotation('t2', 'c4'));
    assert.deepEqual(replies[2], { ...accepted, correlation_id: 'c3' });
    assert.equal(replies[3].status, 400);

    // A redaction in another room cannot touch the annotation, even naming its event.
    const eventId = (accepted.body as { event_id: string }).event_id;
    run({ kind: 'redaction', room_id: '!elsewhere:x', redacts: eventId }, annotation('t5', 'c5'));
    assert.equal(replies[4].status, 400, 'still held');

    // Redacting the held annotation in its room frees it; the rejected transaction still gets its rejection.
    run({ kind: 'redaction', room_id: '!r:x', redacts: eventId }, annotation('t3', 'c6'), annotation('t2', 'c7'));
    assert.equal(replies[5].status, 200);
    assert.notEqual((replies[5].body as { event_id: string }).event_id, eventId);
    assert.equal(replies[6].status, 400);
  });

  it('keeps nothing from a batch whose transaction did not commit', () => {
    const handler = annotationStage(60_000);
    const state = handler.createState(0);
    handler.processBatch(state, batchOf(annotation('t1', 'c1'))); // aborted: afterCommit never runs
    assert.equal(state.size, 0);
  });

  it('writes tombstones for transactions past the window, found by the sweep or by a restore', async () => {
    const windowMs = 50;
    const handler = annotationStage(windowMs);
    const state = handler.createState(0);
    handler.processBatch(state, batchOf(annotation('t1', 'c1'))).afterCommit();
    // A restore meets an old transaction of a previous owner.
    state.apply('txn:id-old', { event_id: '$old', ts: Date.now() - 10 * windowMs });
    await new Promise((resolve) => setTimeout(resolve, windowMs + 10));
    assert.equal(state.expiredKeys().length, 2, 'the one the restore met, and the one now past the window');
    const next = handler.processBatch(state, batchOf());
    const changelog = next.records.find((r) => r.topic === 'state')?.messages ?? [];
    assert.deepEqual(
      changelog
        .filter((m) => m.value === null)
        .map((m) => m.key)
        .sort(),
      ['txn:id-old', 'txn:id-t1'],
    );
    next.afterCommit();
    assert.deepEqual(state.expiredKeys(), [], 'written once');
  });
  it('dead-letters a record as strictly as a command: a command with a field missing, or replies outside the prefix', () => {
    const sentTo: string[] = [];
    const handler = annotationStage(60_000, (to) => sentTo.push(to));
    const state = handler.createState(0);
    const typeless: Partial<SendCommand> = command('t-typeless', 'c-typeless');
    delete typeless.type;
    const records = [
      { ...annotation('t-typeless', 'c-typeless'), command: typeless },
      { ...annotation('t-hijack', 'c-hijack'), command: { ...command('t-hijack', 'c-hijack'), reply_to: 'events' } },
      { ...annotation('t-content', 'c-content'), command: { ...command('t-content', 'c-content'), content: 'x' } },
      { kind: 'redaction', room_id: '', redacts: '$e' },
      annotation('t-fine', 'c-fine'),
    ] as AnnotationStageRecord[];
    const result = handler.processBatch(state, batchOf(...records));
    result.afterCommit();
    const events = result.records.find((r) => r.topic === 'events')?.messages ?? [];
    assert.equal(events.length, 1, 'only the sound annotation is appended');
    assert.match(String(events[0].value), /"type":"m.reaction"/);
    const dead = result.records.find((r) => r.topic === 'dlq')?.messages ?? [];
    assert.deepEqual(
      dead.map((m) => (m.headers as Record<string, string>).reason),
      [
        'command: missing type',
        'command: reply_to outside KAFKA_REPLY_TOPIC_PREFIX',
        'command: content is not an object',
        'missing room_id',
      ],
    );
    assert.deepEqual(sentTo, [`${REPLY_PREFIX}gateway-1`], 'no reply outside the prefix');
  });
});
