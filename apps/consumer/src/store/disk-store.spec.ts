import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DiskStore, StoredRow } from './disk-store';

/** A changelog with overwrites, tombstones (of present and absent keys), expiries, refs and groups, in log order. */
function changelog(count: number): [string, StoredRow | null][] {
  let seed = 7;
  const random = (n: number): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % n;
  const records: [string, StoredRow | null][] = [];
  for (let i = 0; i < count; i++) {
    const key = `k${random(count / 4)}`;
    const kind = random(10);
    if (kind === 0) records.push([key, null]);
    else if (kind === 1)
      records.push([key, { value: `held ${i}`, expires: null, ref: `$e${i}`, group: `@u${random(5)}` }]);
    else records.push([key, { value: `v${i}`, expires: 1000 + random(1000) }]);
  }
  return records;
}

/** Everything a store answers about the given keys, refs and groups. */
function contents(store: DiskStore, records: [string, StoredRow | null][]): object {
  const keys = [...new Set(records.map(([key]) => key))].sort();
  return {
    size: store.size,
    rows: keys.map((key) => [key, store.get(key, 0) ?? null]),
    refs: records.flatMap(([, row]) => (row?.ref ? [[row.ref, store.findByRef(row.ref) ?? null]] : [])),
    groups: [0, 1, 2, 3, 4].map((g) => store.countByGroup(`@u${g}`)),
    expired: store.expiredKeys(1500, 1_000_000).sort(),
    checkpoint: store.checkpoint(),
  };
}

const withDir = async (run: (dir: string) => Promise<void>): Promise<void> => {
  const dir = mkdtempSync(join(tmpdir(), 'disk-store-'));
  try {
    await run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

describe('a state store on disk', () => {
  it('holds after a full restore exactly what applying the changelog one record at a time gives', () =>
    withDir(async (dir) => {
      const records = changelog(60_000); // three restore chunks
      const expected = new DiskStore(':memory:', 1 << 20);
      for (const [key, row] of records) expected.restoreRow(key, row);
      await expected.restored({ offset: '60000', fingerprint: 'f' });

      const file = join(dir, 'state.db');
      const store = new DiskStore(file, 1 << 20);
      store.write([['stale', { value: 'from before', expires: null }]], { offset: '3', fingerprint: 'old' });
      store.clear();
      assert.equal(store.checkpoint(), undefined);
      for (const [key, row] of records) store.restoreRow(key, row);
      await store.restored({ offset: '60000', fingerprint: 'f' });
      assert.ok(expected.size > 1000, 'the changelog leaves rows');
      assert.deepEqual(contents(store, records), contents(expected, records));
      assert.equal(store.get('stale', 0), undefined);
      assert.deepEqual(readdirSync(dir).sort(), ['state.db', 'state.db-shm', 'state.db-wal']);
      store.write([['after', { value: 'a batch', expires: null }]], { offset: '60001', fingerprint: 'g' });
      store.close();

      const reopened = new DiskStore(file, 1 << 20);
      assert.deepEqual(contents(reopened, records), {
        ...contents(expected, records),
        size: expected.size + 1,
        checkpoint: { offset: '60001', fingerprint: 'g' },
      });
      assert.equal(reopened.get('after', 0), 'a batch');
      reopened.close();
      expected.close();
    }));

  it('has no state, not a partial one, after a full restore cut short by a crash or a close', () =>
    withDir(async (dir) => {
      const file = join(dir, 'state.db');
      const store = new DiskStore(file, 1 << 20);
      store.write([['kept', { value: 'v', expires: null }]], { offset: '10', fingerprint: 'a' });
      store.clear();
      for (const [key, row] of changelog(30_000)) store.restoreRow(key, row);
      // A crash: the process dies mid-restore; the next process opens the same path.
      const next = new DiskStore(file, 1 << 20);
      assert.equal(next.checkpoint(), undefined);
      assert.equal(next.size, 0);
      assert.equal(existsSync(`${file}.restoring`), false);
      assert.equal(existsSync(`${file}.staged`), false);
      next.close();
      store.close(); // the take-over failed: the unfinished restore's files go
      assert.deepEqual(
        readdirSync(dir).filter((name) => !name.startsWith('state.db-')),
        ['state.db'],
      );
      const again = new DiskStore(file, 1 << 20);
      assert.equal(again.checkpoint(), undefined);
      assert.equal(again.size, 0);
      again.close();
    }));

  it('answers while a full restore merges in its worker, and closes without waiting for it', () =>
    withDir(async (dir) => {
      const file = join(dir, 'state.db');
      const store = new DiskStore(file, 1 << 20);
      store.clear();
      for (const [key, row] of changelog(20_000)) store.restoreRow(key, row);
      const merged = store.restored({ offset: '5', fingerprint: 'f' });
      assert.equal(store.bytes, 0);
      assert.deepEqual(store.expiredKeys(5000, 10), []);
      store.close();
      await merged;
      const reopened = new DiskStore(file, 1 << 20);
      assert.deepEqual(reopened.checkpoint(), { offset: '5', fingerprint: 'f' }, 'the merged file is complete');
      reopened.close();
    }));

  it('copies its write-ahead log into the database from a worker, not inside a commit', () =>
    withDir(async (dir) => {
      const file = join(dir, 'state.db');
      const store = new DiskStore(file, 1 << 20);
      const commit = (n: number): void =>
        store.write(
          Array.from({ length: 100 }, (_, i): [string, StoredRow] => [
            `k${n}-${i}`,
            { value: 'v'.repeat(100), expires: 1 },
          ]),
          { offset: String(n), fingerprint: 'f' },
        );
      for (let n = 0; n < 50; n++) commit(n);
      await new Promise((done) => setTimeout(done, 1100));
      commit(50); // past the interval: asks the worker again
      const deadline = Date.now() + 10_000;
      while (statSync(file).size < 500_000 && Date.now() < deadline) await new Promise((done) => setTimeout(done, 50));
      // The store's connection checkpoints only past 16 MB of log (or when it closes, which it has not).
      assert.ok(statSync(`${file}-wal`).size < 16 << 20, 'the premise: SQLite did not checkpoint on its own');
      assert.ok(statSync(file).size >= 500_000, 'the worker copied the log into the database');
      store.close();
      const reopened = new DiskStore(file, 1 << 20);
      assert.equal(reopened.size, 5100);
      assert.deepEqual(reopened.checkpoint(), { offset: '50', fingerprint: 'f' });
      reopened.close();
    }));
});
