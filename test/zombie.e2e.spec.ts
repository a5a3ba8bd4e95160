import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertExactlyOnce, transactions } from './support/exactly-once';
import { runLoad } from './support/load';
import { AppProcess, isolatedEnv } from './support/pipeline';

const SESSION_TIMEOUT_MS = 6000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The case Kafka's fencing exists for: a process that is not dead, only frozen (a long GC pause, a stopped VM),
 * while the others carry on without it. When it wakes up, nothing it does may reach the event log twice.
 */
describe('zombies: frozen processes that wake up', () => {
  it('keeps exactly once when a consumer freezes past its session, another takes over, and it wakes up', async () => {
    const env = isolatedEnv({ SEND_TIMEOUT_MS: '2000', CONSUMER_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS) });
    const started: AppProcess[] = [];
    const start = async (name: 'consumer' | 'gateway') => started[started.push(await AppProcess.start(name, env)) - 1];
    try {
      const zombie = await start('consumer');
      await start('consumer'); // the survivor
      const gateway = await start('gateway');
      let frozen: Promise<void> | undefined;
      const outcomes = await runLoad(() => gateway.url, transactions('zombie-consumer', 2000), {
        concurrency: 16,
        onProgress: (done) => {
          if (done !== 400) return;
          zombie.pause();
          // Past the session timeout the group gives its partitions to the survivor, which fences the zombie's
          // transactional ids; then the zombie resumes with its batches, producers and state from before.
          frozen = sleep(SESSION_TIMEOUT_MS * 2.5).then(() => zombie.resume());
        },
      });
      await frozen;
      assert.ok(frozen, 'the consumer was frozen during the load');
      assert.ok(
        outcomes.some((o) => o.retryable.length > 0),
        'clients felt the frozen consumer (otherwise this proves nothing)',
      );
      await assertExactlyOnce(env, outcomes);
      // Awake again, the zombie rejoins as an ordinary member (or exits to be restarted); either way it is no writer.
      await sleep(3000);
      await assertExactlyOnce(env, outcomes);
    } finally {
      started[0]?.resume();
      await Promise.all(started.map((app) => app.stop().catch(() => app.kill())));
    }
  });

  it('keeps exactly once when a gateway freezes, its clients retry elsewhere, and it wakes up', async () => {
    const env = isolatedEnv({ SEND_TIMEOUT_MS: '2000' });
    const consumer = await AppProcess.start('consumer', env);
    const zombie = await AppProcess.start('gateway', env);
    const other = await AppProcess.start('gateway', env);
    let target = zombie;
    try {
      let frozen: Promise<void> | undefined;
      const outcomes = await runLoad(() => target.url, transactions('zombie-gateway', 1500), {
        concurrency: 16,
        requestTimeoutMs: 3000,
        onProgress: (done) => {
          if (done !== 300) return;
          zombie.pause();
          target = other; // clients whose requests time out retry through the other gateway
          // Wakes up with requests half done: commands it had not published yet go out late, replies arrive late.
          frozen = sleep(8000).then(() => zombie.resume());
        },
      });
      await frozen;
      assert.ok(
        outcomes.some((o) => o.retryable.includes(0)),
        'clients timed out on the frozen gateway and retried',
      );
      await sleep(3000); // whatever the woken gateway still had to publish
      await assertExactlyOnce(env, outcomes);
    } finally {
      zombie.resume();
      await Promise.all([consumer, zombie, other].map((app) => app.stop().catch(() => app.kill())));
    }
  });
});
