import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, StatementSync } from 'node:sqlite';
import { Checkpoint } from '@app/kafka';
import {
  FULL_RESTORE_SUFFIX,
  INDEXES,
  installFullRestore,
  mergeFullRestore,
  removeDatabase,
  STAGING_SUFFIX,
  STAGING_TABLE,
} from './full-restore';
import { WalCheckpointer } from './wal-checkpointer';

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

/**
 * SQLite's own checkpoint, inside a commit, only past this many pages of write-ahead log (16 MB of 4 KB pages, against
 * its default of 1,000): the WalCheckpointer does it off the event loop before, this bounds the log if it cannot (a
 * store written without a pause). The log file is cut back to the same size once it starts over.
 */
const WAL_AUTOCHECKPOINT_PAGES = 4096;
const WAL_SIZE_LIMIT_BYTES = 16 << 20;

/**
 * Rows written to SQLite per transaction while restoring from a checkpoint: enough to amortise the commit, few enough
 * that one commit holds the event loop for tens of ms, not hundreds (20,000 into a store of 10 M held it 565 ms).
 */
const RESTORE_COMMIT_EVERY = 2000;
/** Records appended per transaction while a full restore stages them (no journal, no index: cheap to commit). */
const STAGED_COMMIT_EVERY = 20_000;

const TABLES = `
  CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER, ref TEXT, grp TEXT
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
`;

interface Statements {
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
}

/**
 * One partition's state store on local disk: an SQLite database (Node's built-in `node:sqlite`, chosen by
 * `npm run bench:state`) holding rows of (key → JSON value, expiry) and the changelog checkpoint. A committed
 * batch's changes and its checkpoint are written in one SQLite transaction, so the store never claims a checkpoint
 * beyond what it holds; WAL mode with `synchronous=NORMAL` keeps every transaction atomic across a crash (a power
 * loss may lose the last ones, and the checkpoint with them: the changelog replays them).
 *
 * A full restore (after `clear`) builds a new file beside it instead (see `FULL_RESTORE_SUFFIX`): the changelog's
 * records are appended as they come, then merged in key order, the indexes built and the checkpoint written by a
 * worker thread, and only then the file takes the store's name. A restore cut short leaves no store (the next
 * take-over restores fully again), never a store with a checkpoint it does not hold.
 *
 * Its page cache lives outside the V8 heap and is bounded by `cacheBytes`; nothing else is kept in memory.
 */
export class DiskStore {
  private db!: DatabaseSync;
  private statements!: Statements;
  /** Rows held, counted at open and kept up to date by every write. */
  private rows = 0;
  /** Rows applied by the restore under way since its last SQLite commit. */
  private restoring = 0;
  /** Copies the write-ahead log into the database off the event loop (none for a store in memory). */
  private checkpointer: WalCheckpointer | undefined;
  /** A full restore under way: records go to the staging table of the new file. */
  private staging: StatementSync | null = null;
  /** The worker merging a full restore holds the new file: the store has no open database until it is done. */
  private merging = false;
  private closed = false;

  /**
   * `path`: the database file (its folder is created), or `:memory:` for a store that lives as long as this object.
   * `tempDir`: where SQLite's sort of a full restore spills (on the state directory's disk, not /tmp).
   */
  constructor(
    readonly path: string,
    private readonly cacheBytes: number,
    private readonly tempDir: string = dirname(path),
  ) {
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true });
      removeDatabase(`${path}${FULL_RESTORE_SUFFIX}`); // a full restore a crash cut short
      removeDatabase(`${path}${STAGING_SUFFIX}`);
    }
    this.open(path);
  }

  private open(path: string): void {
    this.db = new DatabaseSync(path);
    try {
      this.db.exec(`
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES};
        PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT_BYTES};
        PRAGMA cache_size = -${this.cacheKib()};
        PRAGMA mmap_size = ${MMAP_BYTES};
        ${TABLES}
        ${INDEXES}
      `);
      this.prepare();
      if (path !== ':memory:') this.checkpointer = new WalCheckpointer(path);
      // Counting the rows walks the whole table (seconds at 10 M): the count is kept beside them instead.
      const rows = (this.statements.meta.get('rows') as { value: string } | undefined)?.value;
      this.rows = rows === undefined ? this.countRows() : Number(rows);
    } catch (error) {
      this.closeDatabase();
      throw error;
    }
  }

  /** Closes the connection, once the checkpoint of it under way in the worker has ended. */
  private closeDatabase(): void {
    this.checkpointer?.stop();
    this.checkpointer = undefined;
    this.db.close();
  }

  private prepare(): void {
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
  }

  private cacheKib(): number {
    return Math.max(64, Math.floor(this.cacheBytes / 1024));
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
      this.commit();
    } catch (error) {
      this.rollBack();
      throw error;
    }
  }

  /**
   * Applies one changelog record while restoring; rows are committed in chunks, and the checkpoint only by
   * `restored`, so a restore cut short leaves the previous checkpoint (and replays from there).
   */
  restoreRow(key: string, row: StoredRow | null): void {
    try {
      if (this.restoring === 0) this.db.exec('BEGIN');
      if (this.staging)
        this.staging.run(key, row?.value ?? null, row?.expires ?? null, row?.ref ?? null, row?.group ?? null);
      else this.put(key, row);
      if (++this.restoring >= (this.staging ? STAGED_COMMIT_EVERY : RESTORE_COMMIT_EVERY)) this.finishRestoreChunk();
    } catch (error) {
      this.restoring = 0;
      this.rollBack();
      throw error;
    }
  }

  /**
   * The restore reached `checkpoint`: everything up to it is in the store. After a full restore, resolves once the
   * worker merged the staged records and the new file took the store's name (rejects if it could not: no store).
   */
  async restored(checkpoint: Checkpoint): Promise<void> {
    if (!this.staging) return this.write([], checkpoint);
    this.finishRestoreChunk();
    this.staging = null;
    this.closeDatabase();
    this.merging = true;
    const building = `${this.path}${FULL_RESTORE_SUFFIX}`;
    try {
      await mergeFullRestore({ path: building, cacheBytes: this.cacheBytes, tempDir: this.tempDir, checkpoint });
      installFullRestore(building, this.path);
    } catch (error) {
      removeDatabase(building);
      throw error;
    } finally {
      removeDatabase(`${this.path}${STAGING_SUFFIX}`);
      this.merging = false;
      if (!this.closed) this.open(this.path);
    }
  }

  /**
   * Empties the store and forgets its checkpoint, before a full restore. A store on disk deletes its files and starts
   * a new one beside them that takes records as fast as they come (no journal, no index, no sync: it is thrown away
   * unless the restore finishes); see `restored`.
   */
  clear(): void {
    this.finishRestoreChunk();
    if (this.path === ':memory:') {
      this.db.exec('BEGIN; DELETE FROM entries; DELETE FROM meta; COMMIT');
      this.rows = 0;
      return;
    }
    this.staging = null;
    this.closeDatabase();
    removeDatabase(this.path);
    const building = `${this.path}${FULL_RESTORE_SUFFIX}`;
    const staged = `${this.path}${STAGING_SUFFIX}`;
    removeDatabase(building);
    removeDatabase(staged);
    this.db = new DatabaseSync(building);
    this.db.exec(`
      PRAGMA journal_mode = OFF;
      PRAGMA synchronous = OFF;
      PRAGMA cache_size = -${this.cacheKib()};
      ${TABLES}
    `);
    this.db.prepare('ATTACH DATABASE ? AS staged').run(staged);
    this.db.exec(`
      PRAGMA staged.journal_mode = OFF;
      PRAGMA staged.synchronous = OFF;
      ${STAGING_TABLE}
    `);
    this.prepare();
    this.staging = this.db.prepare('INSERT INTO staged.records (key, value, expires, ref, grp) VALUES (?, ?, ?, ?, ?)');
    this.rows = 0;
  }

  checkpoint(): Checkpoint | undefined {
    const value = (this.statements.meta.get('checkpoint') as { value: string } | undefined)?.value;
    return value === undefined ? undefined : (JSON.parse(value) as Checkpoint);
  }

  /** Keys of rows that expired by `now`, oldest first, at most `limit` (none once closed: the sweep may come late). */
  expiredKeys(now: number, limit: number): string[] {
    if (this.closed || this.merging) return [];
    return (this.statements.expired.all(now, limit) as { key: string }[]).map((row) => row.key);
  }

  /** Deletes at most `limit` rows that expired by `now`; returns how many. */
  deleteExpired(now: number, limit: number): number {
    if (this.closed || this.merging) return 0;
    this.db.exec('BEGIN');
    try {
      const deleted = Number(this.statements.deleteExpired.run(now, limit).changes);
      this.rows -= deleted;
      this.commit();
      return deleted;
    } catch (error) {
      this.rollBack();
      throw error;
    }
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
    if (this.closed || this.merging) return 0;
    const pragma = (name: string): number => Number(Object.values(this.db.prepare(`PRAGMA ${name}`).get()!)[0]);
    return (pragma('page_count') - pragma('freelist_count')) * pragma('page_size');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.merging) return; // the worker finishes the file, and no one opens it
    try {
      if (!this.staging) this.finishRestoreChunk();
    } finally {
      this.closeDatabase();
      // A full restore left unfinished is worth nothing: its files go (the next take-over restores fully again).
      if (this.staging) {
        this.staging = null;
        removeDatabase(`${this.path}${FULL_RESTORE_SUFFIX}`);
        removeDatabase(`${this.path}${STAGING_SUFFIX}`);
      }
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
    this.commit();
  }

  /** Commits the transaction under way, with the count of rows it leaves. */
  private commit(): void {
    this.statements.setMeta.run('rows', String(this.rows));
    this.db.exec('COMMIT');
    this.checkpointer?.committed();
  }

  private countRows(): number {
    return Number((this.db.prepare('SELECT count(*) AS n FROM entries').get() as { n: number }).n);
  }

  /**
   * Ends a failed transaction. SQLite rolls some back itself (a full disk, an I/O error): then there is none to end,
   * and the error the caller throws stays the one that says why.
   */
  private rollBack(): void {
    try {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      this.rows = this.countRows();
    } catch {
      // The store is unusable until it is opened again (the take-over that follows does).
    }
  }
}
