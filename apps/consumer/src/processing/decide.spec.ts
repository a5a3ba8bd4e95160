import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SEND_COMMAND_VERSION, SendCommand, TxnRecord } from '@app/contracts';
import { DedupState, StagedState } from '../dedup/dedup-state';
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
    const state = new DedupState(60_000, () => 2000);
    const staged = new StagedState(state);
    const first = decide(command(), at(5), (id) => staged.get(id), 2000);
    assert.equal(first.kind, 'accepted');
    if (first.kind !== 'accepted') return;
    staged.set(first.identity, first.remember);
    const retry = decide(command({ content: { body: 'changed' }, correlation_id: 'c2' }), at(6), (id) => staged.get(id), 2000);
    assert.deepEqual(retry, { kind: 'duplicate', identity: first.identity, reply: { ...first.reply, correlation_id: 'c2' } });
    staged.commit();
    assert.equal(decide(command(), at(9), (id) => state.get(id), 2000).kind, 'duplicate');
  });

  it('treats the same txnId in another room or with another event type as another transaction', () => {
    const state = new DedupState(60_000, () => 2000);
    const first = decide(command(), at(5), (id) => state.get(id), 2000);
    if (first.kind === 'accepted') state.apply(first.identity, first.remember);
    assert.equal(decide(command({ room_id: '!other:x' }), at(6), (id) => state.get(id), 2000).kind, 'accepted');
    assert.equal(decide(command({ type: 'm.reaction' }), at(7), (id) => state.get(id), 2000).kind, 'accepted');
  });

  it('replays a remembered rejection as the same error', () => {
    const rejection: TxnRecord = { error: { status: 400, errcode: 'M_DUPLICATE_ANNOTATION', error: 'dup' }, ts: 1 };
    const decision = decide(command(), at(1), () => rejection, 2000);
    assert.deepEqual(decision.reply, { correlation_id: 'c1', status: 400, body: { errcode: 'M_DUPLICATE_ANNOTATION', error: 'dup' } });
  });
});

describe('the dedup state', () => {
  it('forgets transactions older than the window', () => {
    let now = 0;
    const state = new DedupState(1000, () => now);
    state.apply('old', { event_id: '$old', ts: 0 });
    now = 500;
    state.apply('new', { event_id: '$new', ts: 500 });
    assert.equal(state.get('old')?.event_id, '$old');
    now = 1200;
    assert.equal(state.sweep(), 1);
    assert.equal(state.get('old'), undefined);
    assert.equal(state.get('new')?.event_id, '$new');
    now = 1600;
    assert.equal(state.get('new'), undefined);
  });

  it('keeps a batch staged until it commits', () => {
    const state = new DedupState(1000, () => 0);
    const staged = new StagedState(state);
    staged.set('t', { event_id: '$e', ts: 0 });
    assert.equal(state.get('t'), undefined);
    staged.commit();
    assert.equal(state.get('t')?.event_id, '$e');
  });
});
