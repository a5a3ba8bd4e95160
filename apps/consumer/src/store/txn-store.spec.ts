import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TxnRecord } from '@app/contracts';
import { DiskStore } from './disk-store';
import { TxnStore } from './txn-store';
import { WriteBuffer } from './write-buffer';

const inMemory = (windowMs: number, now: () => number) =>
  new TxnStore(new DiskStore(':memory:', 1 << 20), windowMs, now);

describe("the send stage's state store", () => {
  it('forgets transactions older than the window', () => {
    let now = 0;
    const state = inMemory(1000, () => now);
    state.commit([['old', { event_id: '$old', ts: 0 }]]);
    now = 500;
    state.commit([['new', { event_id: '$new', ts: 500 }]]);
    assert.equal(state.get('old')?.event_id, '$old');
    now = 1200;
    assert.equal(state.get('old'), undefined, 'past the window before the sweep too');
    assert.equal(state.size, 2);
    assert.equal(state.sweep(1000), 1);
    assert.equal(state.size, 1);
    assert.equal(state.get('new')?.event_id, '$new');
    now = 1600;
    assert.equal(state.get('new'), undefined);
  });

  it('sweeps nothing, and does not throw, once its partition was released and the store closed', () => {
    let now = 0;
    const state = inMemory(1000, () => now);
    state.commit([['old', { event_id: '$old', ts: 0 }]]);
    state.close();
    now = 5000;
    assert.equal(state.sweep(1000), 0);
    assert.equal(state.bytes, 0);
  });

  it('keeps a batch staged until it commits', () => {
    const state = inMemory(1000, () => 0);
    const staged = new WriteBuffer<TxnRecord>((id) => state.get(id));
    staged.set('t', { event_id: '$e', ts: 0 });
    assert.equal(staged.get('t')?.event_id, '$e');
    assert.equal(state.get('t'), undefined);
    state.commit(staged.entries(), { offset: '7', fingerprint: 'f' });
    assert.equal(state.get('t')?.event_id, '$e');
    assert.deepEqual(state.checkpoint(), { offset: '7', fingerprint: 'f' });
  });

  it('finds its entries and checkpoint again when reopened, but not a restore cut short', () => {
    const dir = mkdtempSync(join(tmpdir(), 'txn-store-'));
    try {
      const file = join(dir, 'state.db');
      const first = new TxnStore(new DiskStore(file, 1 << 20), 60_000, () => 0);
      first.commit([['kept', { event_id: '$kept', ts: 0 }]], { offset: '10', fingerprint: 'a' });
      first.apply('restoring', { event_id: '$r', ts: 0 }); // a restore under way: not committed yet
      // A crash: the process dies without closing; a second connection sees only what was committed.
      const second = new TxnStore(new DiskStore(file, 1 << 20), 60_000, () => 0);
      assert.equal(second.get('kept')?.event_id, '$kept');
      assert.equal(second.get('restoring'), undefined);
      assert.deepEqual(second.checkpoint(), { offset: '10', fingerprint: 'a' });
      assert.equal(second.size, 1);
      second.close();
      first.close();
      const third = new TxnStore(new DiskStore(file, 1 << 20), 60_000, () => 0);
      assert.equal(third.get('restoring')?.event_id, '$r', 'a restore chunk commits when the store closes');
      third.clear();
      assert.equal(third.checkpoint(), undefined);
      assert.equal(third.size, 0);
      third.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
