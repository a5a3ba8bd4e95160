import { Logger } from '@nestjs/common';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { DiskStore } from './disk-store';
import { removeDatabase } from './full-restore';

/** SQLite's primary result codes that mean the disk refused (https://sqlite.org/rescode.html). */
const SQLITE_DISK_ERRORS: Record<number, string> = {
  8: 'SQLITE_READONLY',
  10: 'SQLITE_IOERR',
  13: 'SQLITE_FULL',
  14: 'SQLITE_CANTOPEN',
};
/**
 * File system errors that mean the state directory cannot take writes. ENOENT too: Node's recursive mkdir reports a
 * read-only file system so, and a store's folder that vanished is the operator's to look at as well.
 */
const FS_DISK_ERRORS = new Set([
  'ENOSPC',
  'EDQUOT',
  'EFBIG',
  'EROFS',
  'EACCES',
  'EPERM',
  'EIO',
  'ENOTDIR',
  'EEXIST',
  'ENOENT',
]);
/** SQLite's primary result codes of a file that is not a store any more (corrupt, or something else). */
const SQLITE_UNREADABLE: Record<number, string> = { 11: 'SQLITE_CORRUPT', 26: 'SQLITE_NOTADB' };

/**
 * Why the disk refused, when `error` says it did (a full disk, a quota or file-size limit, a read-only or vanished
 * directory): say `SQLITE_FULL: database or disk is full` or `ENOSPC`; undefined for any other error.
 */
export function diskRefusal(error: unknown): string | undefined {
  const { code, errcode, errstr } = (error ?? {}) as { code?: unknown; errcode?: unknown; errstr?: unknown };
  if (typeof errcode === 'number' && SQLITE_DISK_ERRORS[errcode & 0xff])
    return `${SQLITE_DISK_ERRORS[errcode & 0xff]}: ${typeof errstr === 'string' ? errstr : String(error)}`;
  return typeof code === 'string' && FS_DISK_ERRORS.has(code) ? code : undefined;
}

/** What `prepare` writes to prove the directory takes writes: enough that a disk about to fill up fails it. */
const PROBE_BYTES = 1 << 20;
/** The file whose lock a consumer process holds on its STATE_DIR (Kafka Streams' `.lock`), and who holds it. */
const LOCK_FILE = '.lock';
const LOCK_OWNER_FILE = '.lock-owner';

export interface StateDirectoryOptions {
  /** STATE_DIR: the root, or null for stores that live in memory only (unit tests). */
  root: string | null;
  /** SQLite page cache of one store, bytes (off the V8 heap). */
  cacheBytesPerStore: number;
  /** STATE_CLEANUP_DELAY_MS: how long the state of a partition this process no longer owns stays on disk. */
  cleanupDelayMs: number;
}

/**
 * Where a consumer keeps its partitions' state stores: `<STATE_DIR>/<group>/<changelog topic>/<partition>/`, one
 * SQLite database each. A store of a partition this process no longer owns is kept for STATE_CLEANUP_DELAY_MS (a
 * partition that comes back soon restores from its checkpoint) and then deleted; so is one found at start that no
 * take-over opens within the delay.
 */
export class StateDirectory {
  private readonly logger = new Logger('StateDirectory');
  private readonly open = new Set<string>();
  private readonly cleanups = new Map<string, NodeJS.Timeout>();
  /** The connection whose exclusive lock on `<root>/.lock` says this process owns the directory. */
  private lock?: DatabaseSync;

  /** Set once the partition counts are known (see STATE_CACHE_BYTES); applies to stores opened from then on. */
  cacheBytesPerStore: number;

  /** Told when a store's disk refused a write (see `refused`), with a line naming the directory and why. */
  onRefused?: (message: string) => void;

  constructor(private readonly options: StateDirectoryOptions) {
    this.cacheBytesPerStore = options.cacheBytesPerStore;
  }

  /**
   * Reports `error`, thrown while `doing` something with a store, to `onRefused` if it says the disk refused; any
   * other error is the caller's to handle.
   */
  refused(error: unknown, doing: string): void {
    const reason = diskRefusal(error);
    if (reason === undefined) return;
    this.onRefused?.(`STATE_DIR ${this.options.root ?? '(in memory)'} is not usable (${reason}) ${doing}`);
  }

  /**
   * Creates the root if needed and proves it writable (a write of 1 MiB, synced), with an error that says which
   * directory and why; takes the directory's lock (throws while another live process holds it); then
   * schedules the deletion of every store left from an earlier run (cancelled when a take-over opens it).
   */
  prepare(): void {
    const { root } = this.options;
    if (root === null) return;
    try {
      mkdirSync(root, { recursive: true });
      accessSync(root, constants.W_OK);
      const probe = join(root, `.write-probe-${process.pid}`);
      try {
        writeFileSync(probe, Buffer.alloc(PROBE_BYTES), { flush: true });
      } finally {
        rmSync(probe, { force: true });
      }
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new Error(`STATE_DIR ${root} is not usable (${reason})`, { cause: error });
    }
    this.takeLock(root);
    for (const group of this.list(root))
      for (const topic of this.list(join(root, group)))
        for (const partition of this.list(join(root, group, topic))) {
          const dir = join(root, group, topic, partition);
          if (!this.open.has(dir)) this.scheduleCleanup(dir);
        }
  }

  /** Opens (creating if needed) the store of one partition; throws when the disk refuses. */
  openStore(group: string, topic: string, partition: number): DiskStore {
    const dir = this.dirOf(group, topic, partition);
    if (dir === null) return new DiskStore(':memory:', this.cacheBytesPerStore);
    clearTimeout(this.cleanups.get(dir));
    this.cleanups.delete(dir);
    const path = join(dir, 'state.db');
    let store: DiskStore;
    try {
      store = new DiskStore(path, this.cacheBytesPerStore);
    } catch (error) {
      // A store that cannot be read is only a copy of its changelog: start it anew, and the partition restores fully
      // (a process that exited on it would meet the same file at every restart).
      const { errcode } = (error ?? {}) as { errcode?: unknown };
      const unreadable = typeof errcode === 'number' ? SQLITE_UNREADABLE[errcode & 0xff] : undefined;
      if (unreadable === undefined) throw error;
      this.logger.warn(`the state store ${path} is unreadable (${unreadable}): deleted, its partition restores fully`);
      removeDatabase(path);
      store = new DiskStore(path, this.cacheBytesPerStore);
    }
    this.open.add(dir);
    return store;
  }

  /** Closes a store; its files stay for STATE_CLEANUP_DELAY_MS, in case the partition comes back. */
  closeStore(store: DiskStore): void {
    store.close();
    if (store.path === ':memory:') return;
    const dir = join(store.path, '..');
    this.open.delete(dir);
    this.scheduleCleanup(dir);
  }

  /** Cancels the pending deletions and releases the directory's lock. */
  stop(): void {
    this.cleanups.forEach((timer) => clearTimeout(timer));
    this.cleanups.clear();
    this.lock?.close();
    this.lock = undefined;
  }

  /**
   * Two processes on one STATE_DIR would each delete the stores the other has open, and could write one partition's
   * store at once during a hand-over, so a consumer holds an exclusive lock on `<root>/.lock` for as long as it runs,
   * as Kafka Streams does on its state directory. The lock is SQLite's (POSIX advisory locks): the kernel releases it
   * when the process ends however it ends, so no stale lock outlives a crash; a frozen process keeps it.
   */
  private takeLock(root: string): void {
    if (this.lock) return;
    const path = join(root, LOCK_FILE);
    let lock: DatabaseSync | undefined;
    try {
      lock = new DatabaseSync(path, { timeout: 0 });
      // The write proves a writer's lock: SQLite opens a file it may not write read-only, and there BEGIN EXCLUSIVE
      // succeeds without locking anything. The transaction is never committed; it ends with the process.
      lock.exec('PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; PRAGMA user_version = 1');
    } catch (error) {
      lock?.close();
      const { errcode, errstr } = (error ?? {}) as { errcode?: unknown; errstr?: unknown };
      if (typeof errcode === 'number' && (errcode & 0xff) === 5 /* SQLITE_BUSY, and its extended codes */) {
        let owner = '';
        try {
          owner = ` (${readFileSync(join(root, LOCK_OWNER_FILE), 'utf8').trim()})`;
        } catch {
          // who holds it is only a hint
        }
        throw new Error(
          `STATE_DIR ${root} is in use by another consumer process${owner}; each consumer needs a STATE_DIR of its own`,
          { cause: error },
        );
      }
      const unreadable = typeof errcode === 'number' ? SQLITE_UNREADABLE[errcode & 0xff] : undefined;
      const reason = diskRefusal(error) ?? (unreadable ? `${unreadable}: ${String(errstr)}` : (error as Error).message);
      throw new Error(`STATE_DIR ${root} is not usable (cannot lock ${path}: ${reason})`, { cause: error });
    }
    this.lock = lock;
    try {
      writeFileSync(
        join(root, LOCK_OWNER_FILE),
        `pid ${process.pid} on ${hostname()} since ${new Date().toISOString()}\n`,
      );
    } catch (error) {
      this.logger.warn(`could not say who holds ${path} in ${LOCK_OWNER_FILE}: ${String(error)}`);
    }
  }

  private scheduleCleanup(dir: string): void {
    clearTimeout(this.cleanups.get(dir));
    const timer = setTimeout(() => {
      this.cleanups.delete(dir);
      if (this.open.has(dir) || !existsSync(dir)) return;
      try {
        rmSync(dir, { recursive: true, force: true });
        this.logger.log(`deleted the state of ${dir}: not owned for ${this.options.cleanupDelayMs} ms`);
      } catch (error) {
        this.logger.warn(`could not delete the state of ${dir}: ${String(error)}`);
      }
    }, this.options.cleanupDelayMs);
    timer.unref();
    this.cleanups.set(dir, timer);
  }

  private dirOf(group: string, topic: string, partition: number): string | null {
    if (this.options.root === null) return null;
    return join(this.options.root, encodeURIComponent(group), encodeURIComponent(topic), String(partition));
  }

  private list(dir: string): string[] {
    try {
      return readdirSync(dir, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name);
    } catch {
      return [];
    }
  }
}
