import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, StatementSync } from 'node:sqlite';
import { Checkpoint } from '@app/kafka';

/** One row of a store: the value as JSON, when it stops counting (ms; null: never), and a secondary key. */
export interface StoredRow {
  value: string;
  expires: number | null;
  /** Looked up by `findByRef` (the annotation store: the event that holds an annotation). */
  ref?: string | null;
  /** Counted by `countByGroup` (the annotation store: the sender of a held annotation). */
  group?: string | null;
}

/**
 * Reads through a memory map of the file rather than copies into SQLite's page cache: the pages are the kernel's
 * file cache (off the V8 heap, given back under memory pressure). On a 2-core machine under load, 300,000 entries
 * with an 8 MB page cache: writes 3,800–4,400 → 8,000–9,800 a second, lookups 29,000–31,000 → 39,000–193,000.
 * SQLite caps it at its compile-time maximum (2 GB in Node's build); the rest of a bigger file is read as before.
 */
const MMAP_BYTES = 2 ** 40;

/** Rows written to SQLite per transaction while restoring: enough to amortise the commit, few enough to stream. */
const RESTORE_COMMIT_EVERY = 20_000;

/**
 * One partition's state store on local disk: an SQLite database (Node's built-in `node:sqlite`, chosen by
 * `npm run bench:state`) holding rows of (key → JSON value, expiry) and the changelog checkpoint. A committed
 * batch's changes and its checkpoint are written in one SQLite transaction, so the store never claims a checkpoint
 * beyond what it holds; WAL mode with `synchronous=NORMAL` keeps every transaction atomic across a crash (a power
 * loss may lose the last ones, and the checkpoint with them: the changelog replays them).
 *
 * Its page cache lives outside the V8 heap and is bounded by `cacheBytes`; nothing else is kept in memory.
 */
export class DiskStore {
  private readonly db: DatabaseSync;
  private readonly statements: {
    get: StatementSync;
    has: StatementSync;
    countRange: StatementSync;
    insert: StatementSync;
    update: StatementSync;
    delete: StatementSync;
    expired: StatementSync;
    deleteExpired: StatementSync;
    byRef: StatementSync;
    byGroup: StatementSync;
    meta: StatementSync;
    setMeta: StatementSync;
  };
  /** Rows held, counted at open and kept up to date by every write. */
  private rows: number;
  /** Rows applied by the restore under way since its last SQLite commit. */
  private restoring = 0;
  private closed = false;

  /** `path`: the database file (its folder is created), or `:memory:` for a store that lives as long as this object. */
  constructor(
    readonly path: string,
    cacheBytes: number,
  ) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new DatabaseSync(path);
    try {
      this.db.exec(`
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        PRAGMA cache_size = -${Math.max(64, Math.floor(cacheBytes / 1024))};
        PRAGMA mmap_size = ${MMAP_BYTES};
        CREATE TABLE IF NOT EXISTS entries (
          key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER, ref TEXT, grp TEXT
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (expires) WHERE expires IS NOT NULL;
        CREATE INDEX IF NOT EXISTS entries_by_ref ON entries (ref) WHERE ref IS NOT NULL;
        CREATE INDEX IF NOT EXISTS entries_by_group ON entries (grp) WHERE grp IS NOT NULL;
        CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      `);
      const prepare = (sql: string): StatementSync => this.db.prepare(sql);
      this.statements = {
        get: prepare('SELECT value, expires FROM entries WHERE key = ?'),
        has: prepare('SELECT 1 AS found FROM entries WHERE key = ?'),
        countRange: prepare('SELECT count(*) AS n FROM entries WHERE key >= ? AND key < ?'),
        insert: prepare('INSERT OR IGNORE INTO entries (key, value, expires, ref, grp) VALUES (?, ?, ?, ?, ?)'),
        update: prepare('UPDATE entries SET value = ?, expires = ?, ref = ?, grp = ? WHERE key = ?'),
        delete: prepare('DELETE FROM entries WHERE key = ?'),
        expired: prepare('SELECT key FROM entries WHERE expires <= ? ORDER BY expires LIMIT ?'),
        deleteExpired: prepare(
          'DELETE FROM entries WHERE key IN (SELECT key FROM entries WHERE expires <= ? ORDER BY expires LIMIT ?)',
        ),
        byRef: prepare('SELECT key FROM entries WHERE ref = ? LIMIT 1'),
        byGroup: prepare('SELECT count(*) AS n FROM entries WHERE grp = ?'),
        meta: prepare('SELECT value FROM meta WHERE name = ?'),
        setMeta: prepare('INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)'),
      };
      this.rows = Number((this.db.prepare('SELECT count(*) AS n FROM entries').get() as { n: number }).n);
    } catch (error) {
      this.db.close();
      throw error;
    }
  }

  /** The row's value, unless it expired by `now`. */
  get(key: string, now: number): string | undefined {
    const row = this.statements.get.get(key) as { value: string; expires: number | null } | undefined;
    if (!row || (row.expires !== null && row.expires <= now)) return undefined;
    return row.value;
  }

  /** Writes changes (null deletes) and, with them, the checkpoint they bring the store to: all or nothing. */
  write(changes: Iterable<[string, StoredRow | null]>, checkpoint?: Checkpoint): void {
    this.finishRestoreChunk();
    this.db.exec('BEGIN');
    try {
      for (const [key, row] of changes) this.put(key, row);
      if (checkpoint) this.setCheckpoint(checkpoint);
      this.db.exec('COMMIT');
    } catch (error) {
      this.db.exec('ROLLBACK');
      this.rows = Number((this.db.prepare('SELECT count(*) AS n FROM entries').get() as { n: number }).n);
      throw error;
    }
  }

  /**
   * Applies one changelog record while restoring; rows are committed in chunks, and the checkpoint only by
   * `restored`, so a restore cut short leaves the previous checkpoint (and replays from there).
   */
  restoreRow(key: string, row: StoredRow | null): void {
    if (this.restoring === 0) this.db.exec('BEGIN');
    this.put(key, row);
    if (++this.restoring >= RESTORE_COMMIT_EVERY) this.finishRestoreChunk();
  }

  /** The restore reached `checkpoint`: everything up to it is in the store. */
  restored(checkpoint: Checkpoint): void {
    this.write([], checkpoint);
  }

  /** Empties the store and forgets its checkpoint, before a full restore. */
  clear(): void {
    this.finishRestoreChunk();
    this.db.exec('BEGIN; DELETE FROM entries; DELETE FROM meta; COMMIT');
    this.rows = 0;
  }

  checkpoint(): Checkpoint | undefined {
    const value = (this.statements.meta.get('checkpoint') as { value: string } | undefined)?.value;
    return value === undefined ? undefined : (JSON.parse(value) as Checkpoint);
  }

  /** Keys of rows that expired by `now`, oldest first, at most `limit` (none once closed: the sweep may come late). */
  expiredKeys(now: number, limit: number): string[] {
    if (this.closed) return [];
    return (this.statements.expired.all(now, limit) as { key: string }[]).map((row) => row.key);
  }

  /** Deletes at most `limit` rows that expired by `now`; returns how many. */
  deleteExpired(now: number, limit: number): number {
    if (this.closed) return 0;
    const deleted = Number(this.statements.deleteExpired.run(now, limit).changes);
    this.rows -= deleted;
    return deleted;
  }

  /** Whether a row is held for the key, expired or not. */
  has(key: string): boolean {
    return this.statements.has.get(key) !== undefined;
  }

  /** Rows whose keys are in [from, to): a walk of the key index. */
  countKeys(from: string, to: string): number {
    return Number((this.statements.countRange.get(from, to) as { n: number }).n);
  }

  findByRef(ref: string): string | undefined {
    return (this.statements.byRef.get(ref) as { key: string } | undefined)?.key;
  }

  countByGroup(group: string): number {
    return Number((this.statements.byGroup.get(group) as { n: number }).n);
  }

  get size(): number {
    return this.rows;
  }

  /** Bytes the database takes on disk, free pages excluded (what the disk budget counts). */
  get bytes(): number {
    if (this.closed) return 0;
    const pragma = (name: string): number => Number(Object.values(this.db.prepare(`PRAGMA ${name}`).get()!)[0]);
    return (pragma('page_count') - pragma('freelist_count')) * pragma('page_size');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.finishRestoreChunk();
    } finally {
      this.db.close();
    }
  }

  private put(key: string, row: StoredRow | null): void {
    if (row === null) {
      this.rows -= Number(this.statements.delete.run(key).changes);
      return;
    }
    const { value, expires, ref = null, group = null } = row;
    if (Number(this.statements.insert.run(key, value, expires, ref, group).changes) > 0) this.rows++;
    else this.statements.update.run(value, expires, ref, group, key);
  }

  private setCheckpoint(checkpoint: Checkpoint): void {
    this.statements.setMeta.run('checkpoint', JSON.stringify(checkpoint));
  }

  private finishRestoreChunk(): void {
    if (this.restoring === 0) return;
    this.restoring = 0;
    this.db.exec('COMMIT');
  }
}
