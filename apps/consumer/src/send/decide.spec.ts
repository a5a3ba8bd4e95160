import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SEND_COMMAND_VERSION, SendCommand, TxnRecord } from '@app/contracts';
import { DiskStore } from '../store/disk-store';
import { TxnStore } from '../store/txn-store';
import { WriteBuffer } from '../store/write-buffer';
import { decide } from './decide';

const command = (overrides: Partial<SendCommand> = {}): SendCommand => ({
  v: SEND_COMMAND_VERSION,
  room_id: '!r:x',
  type: 'm.room.message',
  txn_id: 't1',
  scope_hash: 'scope',
  sender: '@a:x',
  device_id: 'D',
  content: { body: 'hi' },
  origin_server_ts: 1000,
  correlation_id: 'c1',
  reply_to: 'replies.g1',
  ...overrides,
});
const at = (offset: number) => ({ topic: 'commands', partition: 0, offset: String(offset) });

describe('deciding a command', () => {
  it('accepts a new transaction and answers with its event ID', () => {
    const decision = decide(command(), at(5), () => undefined, 2000);
    assert.equal(decision.kind, 'accepted');
    assert.equal(decision.reply.status, 200);
    if (decision.kind !== 'accepted') return;
    assert.deepEqual(decision.reply.body, { event_id: decision.event.event_id });
    assert.deepEqual(decision.remember, { event_id: decision.event.event_id, ts: 2000 });
  });

  it('answers a retry with the first outcome, even with another body, in the same batch or a later one', () => {
    const state = new TxnStore(new DiskStore(':memory:', 1 << 20), 60_000, () => 2000);
    const staged = new WriteBuffer<TxnRecord>((id) => state.get(id));
    const first = decide(command(), at(5), (id) => staged.get(id), 2000);
    assert.equal(first.kind, 'accepted');
    if (first.kind !== 'accepted') return;
    staged.set(first.identity, first.remember);
    const retry = decide(
      command({ content: { body: 'changed' }, correlation_id: 'c2' }),
      at(6),
      (id) => staged.get(id),
      2000,
    );
    assert.deepEqual(retry, { kind: 'duplicate', reply: { ...first.reply, correlation_id: 'c2' } });
    state.commit(staged.entries());
    assert.equal(decide(command(), at(9), (id) => state.get(id), 2000).kind, 'duplicate');
  });

  it('treats the same txnId in another room or with another event type as another transaction', () => {
    const state = new TxnStore(new DiskStore(':memory:', 1 << 20), 60_000, () => 2000);
    const first = decide(command(), at(5), (id) => state.get(id), 2000);
    if (first.kind === 'accepted') state.apply(first.identity, first.remember);
    assert.equal(decide(command({ room_id: '!other:x' }), at(6), (id) => state.get(id), 2000).kind, 'accepted');
    assert.equal(decide(command({ type: 'm.reaction' }), at(7), (id) => state.get(id), 2000).kind, 'accepted');
  });

  it('replays a remembered rejection as the same error', () => {
    const rejection: TxnRecord = { error: { status: 400, errcode: 'M_DUPLICATE_ANNOTATION', error: 'dup' }, ts: 1 };
    const decision = decide(command(), at(1), () => rejection, 2000);
    assert.equal(decision.kind, 'duplicate');
    if (decision.kind !== 'duplicate') return;
    assert.deepEqual(decision.reply, {
      correlation_id: 'c1',
      status: 400,
      body: { errcode: 'M_DUPLICATE_ANNOTATION', error: 'dup' },
    });
  });
});

describe('annotations and redactions', () => {
  const reaction = (key: string, txn_id: string, target = '$target') =>
    command({
      type: 'm.reaction',
      txn_id,
      content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key } },
    });

  it('hands an annotation to the annotation stage, by annotation identity, and its retries too', () => {
    const first = decide(reaction('👍', 't1'), at(1), () => undefined, 5);
    assert.equal(first.kind, 'forward');
    if (first.kind !== 'forward') return;
    assert.deepEqual(first.remember, { forwarded: first.annotationId, ts: 5 });
    const sameAnnotationOtherTxn = decide(reaction('👍', 't2'), at(2), () => undefined, 5);
    assert.equal(sameAnnotationOtherTxn.kind === 'forward' && sameAnnotationOtherTxn.annotationId, first.annotationId);
    const otherKey = decide(reaction('👎', 't3'), at(3), () => undefined, 5);
    assert.notEqual(otherKey.kind === 'forward' && otherKey.annotationId, first.annotationId);
    // A retry with another body still goes where the first went.
    const retry = decide(reaction('🎉', 't1'), at(4), () => first.remember!, 5);
    assert.deepEqual(retry, {
      kind: 'forward',
      identity: first.identity,
      annotationId: first.annotationId,
      remember: null,
    });
  });

  it('notes what a redaction redacts', () => {
    const redaction = decide(
      command({ type: 'm.room.redaction', content: { redacts: '$gone' } }),
      at(1),
      () => undefined,
      5,
    );
    assert.equal(redaction.kind === 'accepted' && redaction.redacts, '$gone');
  });
});
