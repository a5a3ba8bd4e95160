import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TxnRecord } from '@app/contracts';
import { TxnStore } from './txn-store';
import { WriteBuffer } from './write-buffer';

describe("the send stage's state store", () => {
  it('forgets transactions older than the window', () => {
    let now = 0;
    const state = new TxnStore(1000, () => now);
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
    const state = new TxnStore(1000, () => 0);
    const staged = new WriteBuffer<TxnRecord>((id) => state.get(id));
    staged.set('t', { event_id: '$e', ts: 0 });
    assert.equal(staged.get('t')?.event_id, '$e');
    assert.equal(state.get('t'), undefined);
    staged.commit((id, record) => state.apply(id, record));
    assert.equal(state.get('t')?.event_id, '$e');
  });
});
