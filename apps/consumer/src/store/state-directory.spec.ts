import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { DatabaseSync } from 'node:sqlite';
import { diskRefusal, StateDirectory } from './state-directory';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the state directory', () => {
  it('starts a store that is not a database any more anew, so that its partition restores fully instead of failing', () => {
    const root = mkdtempSync(join(tmpdir(), 'state-directory-'));
    try {
      const directory = new StateDirectory({ root, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 60_000 });
      directory.prepare();
      const first = directory.openStore('group', 'topic', 0);
      first.write([['k', { value: '"v"', expires: null }]], { offset: '5', fingerprint: 'f' });
      assert.ok(first.checkpoint(), 'premise: the store held a checkpoint');
      directory.closeStore(first);
      writeFileSync(first.path, Buffer.alloc(40_000, 7)); // garbage where the database was
      rmSync(`${first.path}-wal`, { force: true });
      rmSync(`${first.path}-shm`, { force: true });
      const reopened = directory.openStore('group', 'topic', 0);
      assert.equal(reopened.checkpoint(), undefined, 'no checkpoint: the take-over restores fully');
      assert.equal(reopened.size, 0);
      directory.closeStore(reopened);
      directory.stop();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('deletes the state of a partition no longer owned after the delay, and keeps one that came back', async () => {
    const root = mkdtempSync(join(tmpdir(), 'state-directory-'));
    try {
      const directory = new StateDirectory({ root, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 300 });
      directory.prepare();
      const leaving = directory.openStore('group', 'topic', 0);
      const returning = directory.openStore('group', 'topic', 1);
      const leavingDir = dirname(leaving.path);
      const returningDir = dirname(returning.path);
      assert.ok(existsSync(leaving.path) && existsSync(returning.path), 'both stores are on disk');
      directory.closeStore(leaving);
      directory.closeStore(returning);
      await sleep(100);
      const back = directory.openStore('group', 'topic', 1); // the partition comes back within the delay
      await sleep(400);
      assert.equal(existsSync(leavingDir), false, 'deleted once the delay passed');
      assert.ok(existsSync(back.path), 'kept: it came back in time');
      directory.closeStore(back);

      // A new process finds what an earlier one left, and deletes what no take-over opens within the delay.
      directory.stop();
      const restarted = new StateDirectory({ root, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 300 });
      restarted.prepare();
      await sleep(400);
      assert.equal(existsSync(returningDir), false, 'left from an earlier run and never opened: deleted');
      restarted.stop();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('says which directory is not usable and why', () => {
    const root = mkdtempSync(join(tmpdir(), 'state-directory-'));
    try {
      const blocked = join(root, 'file');
      rmSync(blocked, { force: true });
      writeFileSync(blocked, 'not a directory');
      const directory = new StateDirectory({
        root: join(blocked, 'state'),
        cacheBytesPerStore: 1 << 20,
        cleanupDelayMs: 0,
      });
      assert.throws(() => directory.prepare(), /STATE_DIR \S+\/file\/state is not usable \(ENOTDIR\)/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('tells a write the disk refused from other errors, and reports it naming the directory', () => {
    const root = mkdtempSync(join(tmpdir(), 'state-directory-'));
    const db = new DatabaseSync(join(root, 'small.db'));
    try {
      // A real SQLITE_FULL: the database may not grow past its pages.
      db.exec('CREATE TABLE t (x TEXT); PRAGMA max_page_count = 3;');
      const full = (() => {
        try {
          db.exec(`INSERT INTO t VALUES ('${'x'.repeat(20_000)}')`);
        } catch (error) {
          return error;
        }
      })();
      assert.equal(diskRefusal(full), 'SQLITE_FULL: database or disk is full');
      const constraint = (() => {
        try {
          new DatabaseSync(':memory:').exec('CREATE TABLE u (k PRIMARY KEY); INSERT INTO u VALUES (1), (1);');
        } catch (error) {
          return error;
        }
      })();
      assert.match(String(constraint), /UNIQUE constraint failed/, 'the premise: a constraint error');
      assert.equal(diskRefusal(constraint), undefined);
      assert.equal(diskRefusal(Object.assign(new Error('no space'), { code: 'ENOSPC' })), 'ENOSPC');
      // Node's recursive mkdir under a read-only mount answers ENOENT, not EROFS.
      assert.equal(diskRefusal(Object.assign(new Error('mkdir'), { code: 'ENOENT' })), 'ENOENT');
      assert.equal(diskRefusal(new Error('something else')), undefined);

      const directory = new StateDirectory({ root, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 0 });
      const told: string[] = [];
      directory.onRefused = (message) => told.push(message);
      directory.refused(constraint, 'writing a batch');
      directory.refused(full, 'writing a batch');
      assert.deepEqual(told, [
        `STATE_DIR ${root} is not usable (SQLITE_FULL: database or disk is full) writing a batch`,
      ]);
    } finally {
      db.close();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('lets one consumer process at a time use a STATE_DIR, names the one that holds it, and lets the next in once it stops', () => {
    const root = mkdtempSync(join(tmpdir(), 'state-directory-'));
    const options = { root, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 60_000 };
    const first = new StateDirectory(options);
    const second = new StateDirectory(options);
    try {
      first.prepare();
      first.prepare(); // again after a suspension: the lock it holds stays its own
      assert.throws(
        () => second.prepare(),
        new RegExp(`STATE_DIR ${root} is in use by another consumer process \\(pid ${process.pid} on .+ since .+\\)`),
      );
      first.stop();
      second.prepare();
    } finally {
      first.stop();
      second.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('frees the STATE_DIR of a consumer process killed with kill -9 at once, with no stale lock to clear', async () => {
    const root = mkdtempSync(join(tmpdir(), 'state-directory-'));
    const options = { root, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 60_000 };
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const { StateDirectory } = require(${JSON.stringify(require.resolve('./state-directory'))});
         new StateDirectory(${JSON.stringify(options)}).prepare();
         console.log('held');
         setInterval(() => undefined, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const directory = new StateDirectory(options);
    try {
      const [line] = (await once(holder.stdout, 'data')) as [Buffer];
      assert.equal(line.toString().trim(), 'held');
      assert.throws(() => directory.prepare(), new RegExp(`in use by another consumer process \\(pid ${holder.pid} `));
      holder.kill('SIGKILL');
      await once(holder, 'exit');
      directory.prepare();
    } finally {
      holder.kill('SIGKILL');
      directory.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('names the lock file it cannot take, and why, instead of an anonymous SQLite error', () => {
    const root = mkdtempSync(join(tmpdir(), 'state-directory-'));
    const directory = new StateDirectory({ root, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 60_000 });
    try {
      mkdirSync(join(root, '.lock'));
      assert.throws(
        () => directory.prepare(),
        new RegExp(`STATE_DIR ${root} is not usable \\(cannot lock ${root}/\\.lock: SQLITE_CANTOPEN`),
      );
      rmSync(join(root, '.lock'), { recursive: true });
      writeFileSync(join(root, '.lock'), 'a pid file of some other program, not a database'.repeat(4));
      assert.throws(() => directory.prepare(), /\(cannot lock \S+\/\.lock: SQLITE_NOTADB: file is not a database\)/);
    } finally {
      directory.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('refuses a lock file it may only read, rather than run without a lock', async () => {
    const root = mkdtempSync(join(tmpdir(), 'state-directory-'));
    writeFileSync(join(root, '.lock'), '');
    chmodSync(join(root, '.lock'), 0o444);
    // Root may write any file: under root the attempt runs as nobody, in a directory it may write, on root's .lock.
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    if (asNobody.uid !== undefined) {
      chmodSync(root, 0o777);
    }
    try {
      const attempt = spawn(
        process.execPath,
        [
          '-e',
          `const { StateDirectory } = require(${JSON.stringify(require.resolve('./state-directory'))});
           try {
             const options = { root: ${JSON.stringify(root)}, cacheBytesPerStore: 1 << 20, cleanupDelayMs: 60000 };
             new StateDirectory(options).prepare();
             console.log('locked');
           } catch (error) {
             console.log(error.message);
           }`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'], ...asNobody },
      );
      let output = '';
      attempt.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      await once(attempt, 'exit');
      assert.match(output, new RegExp(`STATE_DIR ${root} is not usable \\(cannot lock \\S+: SQLITE_READONLY`));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
