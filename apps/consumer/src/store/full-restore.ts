import { closeSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';

/** The file a full restore builds beside the store's own, renamed to it once complete with its checkpoint. */
export const FULL_RESTORE_SUFFIX = '.restoring';
/** The records of a full restore as they came, in log order, until merged (a file of its own, deleted after). */
export const STAGING_SUFFIX = '.staged';

/** The secondary indexes of a store: the sweep by expiry, the holder of an event, the held annotations of a sender. */
export const INDEXES = `
  CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (expires) WHERE expires IS NOT NULL;
  CREATE INDEX IF NOT EXISTS entries_by_ref ON entries (ref) WHERE ref IS NOT NULL;
  CREATE INDEX IF NOT EXISTS entries_by_group ON entries (grp) WHERE grp IS NOT NULL;
`;

/** The changelog's records in log order (rowid); a null value is a tombstone. */
export const STAGING_TABLE = `
  CREATE TABLE IF NOT EXISTS staged.records (key TEXT NOT NULL, value TEXT, expires INTEGER, ref TEXT, grp TEXT);
`;

export interface MergeJob {
  /** The file being built (its entries table empty, its staged records beside it). */
  path: string;
  /** Page cache, and so the sort's memory before it spills to `tempDir`, bytes. */
  cacheBytes: number;
  tempDir: string;
  checkpoint: { offset: string; fingerprint: string };
}

/**
 * Turns the staged records into the store's rows: the last record of each key in log order, unless a tombstone;
 * written in key order (appends to the B-tree, not random inserts), then the indexes and the checkpoint. Exactly
 * what applying the records one by one gives. Synchronous: run it in a worker (`mergeFullRestore`).
 */
export function mergeStaged(job: MergeJob): void {
  const db = new DatabaseSync(job.path);
  try {
    db.exec(`
      PRAGMA journal_mode = OFF;
      PRAGMA synchronous = OFF;
      PRAGMA cache_size = -${Math.max(64, Math.floor(job.cacheBytes / 1024))};
    `);
    // Where the sort spills: the state directory's disk rather than /tmp (PRAGMA takes no parameters).
    db.exec(`PRAGMA temp_store_directory = '${job.tempDir.replaceAll("'", "''")}'`);
    db.prepare('ATTACH DATABASE ? AS staged').run(`${job.path.slice(0, -FULL_RESTORE_SUFFIX.length)}${STAGING_SUFFIX}`);
    const { changes: rows } = db
      .prepare(
        `INSERT INTO entries (key, value, expires, ref, grp)
          SELECT key, value, expires, ref, grp FROM (
            SELECT key, value, expires, ref, grp, row_number() OVER (PARTITION BY key ORDER BY rowid DESC) AS newest
            FROM staged.records
          ) WHERE newest = 1 AND value IS NOT NULL ORDER BY key`,
      )
      .run();
    db.exec(`
      DETACH DATABASE staged;
      BEGIN;
      ${INDEXES}
      COMMIT;
    `);
    const setMeta = db.prepare('INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)');
    setMeta.run('rows', String(rows));
    setMeta.run('checkpoint', JSON.stringify(job.checkpoint));
  } finally {
    db.close();
  }
  // Synced here, off the event loop: the file was written without syncs, and syncing gigabytes takes seconds.
  const fd = openSync(job.path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** What the worker says: nothing when it merged; else its error's message and node:sqlite's codes. */
interface MergeOutcome {
  error?: string;
  code?: string;
  errcode?: number;
  errstr?: string;
}

/** The merge under way: merges run one at a time (see `mergeFullRestore`). */
let merging: Promise<unknown> = Promise.resolve();

/**
 * Runs `mergeStaged` in a worker thread: a merge of millions of rows takes seconds the event loop cannot give. One at
 * a time in a process: SQLite's temp directory is a setting of the whole process, which no two threads may change at
 * once.
 */
export function mergeFullRestore(job: MergeJob): Promise<void> {
  const run = merging.then(() => mergeInWorker(job));
  merging = run.catch(() => undefined);
  return run;
}

function mergeInWorker(job: MergeJob): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(join(__dirname, 'full-restore.worker.js'), { workerData: job });
    let outcome: MergeOutcome | undefined;
    worker.once('message', (message: MergeOutcome) => (outcome = message));
    worker.once('error', reject);
    worker.once('exit', (exitCode) => {
      if (outcome && !outcome.error) resolve();
      else {
        const error = new Error(outcome?.error ?? `the full restore's merge stopped (exit code ${exitCode})`);
        // As node:sqlite throws it, so that the caller can tell a full disk from other errors.
        const { code, errcode, errstr } = outcome ?? {};
        Object.assign(error, { code, errcode, errstr });
        reject(error);
      }
    });
  });
}

/**
 * Makes a merged file (synced by `mergeStaged`) the store: renamed over the store's name (atomic), then the folder
 * synced, so that after a crash there is either no store or the complete one with its checkpoint.
 */
export function installFullRestore(building: string, path: string): void {
  renameSync(building, path);
  const folder = openSync(dirname(path), 'r');
  try {
    fsyncSync(folder);
  } finally {
    closeSync(folder);
  }
}

/** Deletes an SQLite database and its journals. */
export function removeDatabase(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
}
