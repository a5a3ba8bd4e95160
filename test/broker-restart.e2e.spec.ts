import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertExactlyOnce, transactions } from './support/exactly-once';
import { runLoad } from './support/load';
import { PrivateBroker, startPrivateBroker } from '../tools/harness/broker';
import { sendEvent } from './support/matrix-client';
import { AppProcess, isolatedEnv, TEST_USERS } from './support/pipeline';

const SEND_TIMEOUT_MS = 2000;
/**
 * A request may take the wait bound plus the time to publish and to answer; twice that and a few seconds for a
 * loaded 2-core machine, still far from a request that hangs.
 */
const WAIT_BOUND_MS = 2 * SEND_TIMEOUT_MS + 3000;

describe('a broker restart during load', () => {
  let broker: PrivateBroker;
  let env: Record<string, string>;
  let gateway: AppProcess;
  let consumer: AppProcess;
  before(async () => {
    // Its own broker, whatever the other tests use: this test stops and starts it.
    broker = await startPrivateBroker();
    env = isolatedEnv({
      KAFKA_BROKERS: broker.brokers,
      SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
      CONSUMER_SESSION_TIMEOUT_MS: '6000',
    });
    consumer = await AppProcess.start('consumer', env);
    gateway = await AppProcess.start('gateway', env);
  });
  after(async () => {
    await broker?.launcher('start').catch(() => undefined);
    await Promise.all([gateway, consumer].map((app) => app?.stop().catch(() => app.kill())));
    await broker?.stop();
  });

  it('gives clients retryable errors, never a wrong 200, and resumes by itself', async () => {
    // What the apps said is what tells a pipeline that never came back from a slow one: printed when this fails.
    const since = new Map([gateway, consumer].map((app) => [app, app.output.length]));
    try {
      let restarted: Promise<unknown> | undefined;
      const outcomes = await runLoad(() => gateway.url, transactions('broker', 1500), {
        concurrency: 16,
        maxAttempts: 400,
        deadline: Date.now() + 240_000,
        onProgress: (done) => {
          if (done === 300) {
            restarted = broker
              .launcher('stop')
              .then(() => new Promise((r) => setTimeout(r, 3000)))
              .then(() => broker.launcher('start'));
          }
        },
      });
      await restarted;
      const retried = outcomes.filter((o) => o.retryable.length > 0);
      assert.ok(retried.length > 0, 'clients felt the outage');
      assert.ok(
        retried.every((o) => o.retryable.every((status) => status === 503 || status === 0)),
        'only retryable answers during the outage',
      );
      await assertExactlyOnce(env, outcomes);
      const longest = Math.max(...outcomes.map((o) => o.longestWaitMs));
      assert.ok(longest <= WAIT_BOUND_MS + 1000, `requests stayed bounded during the outage (longest ${longest} ms)`);
      const ready = await fetch(`${gateway.url}/health/ready`);
      assert.equal(ready.status, 200, 'the gateway is ready again without a restart');
      process.stdout.write(
        `# broker restart: ${outcomes.length} transactions, ${retried.length} retried, longest wait ${longest} ms\n`,
      );
    } catch (error) {
      const brokerUp = await broker.launcher('status').then(
        () => 'up',
        (down: unknown) => `not up: ${String(down)}`,
      );
      process.stdout.write(`# the broker is ${brokerUp}\n`);
      for (const [app, from] of since)
        process.stdout.write(`# ${app.name} output since the load began:\n${app.output.slice(from).join('')}\n`);
      throw error;
    }
  });

  it('turns both apps not ready while Kafka is lost, answers sends 503 with Retry-After, and is ready again after', async () => {
    const ready = async (app: AppProcess) => (await fetch(`${app.url}/health/ready`)).status;
    const until = async (what: string, condition: () => Promise<boolean>, timeoutMs = 60000) => {
      const deadline = Date.now() + timeoutMs;
      while (!(await condition())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    };
    assert.deepEqual([await ready(gateway), await ready(consumer)], [200, 200]);
    const lost = Date.now();
    await broker.launcher('stop');
    try {
      await until('both apps not ready', async () => (await ready(gateway)) === 503 && (await ready(consumer)) === 503);
      const notReadyAfter = Date.now() - lost;
      const res = await sendEvent(
        gateway.url,
        TEST_USERS.alice.token,
        '!lost:test.local',
        'm.room.message',
        `lost-${Date.now()}`,
        { msgtype: 'm.text', body: 'x' },
      );
      assert.equal(res.status, 503);
      assert.ok(Number(res.headers.get('retry-after')) >= 1);
      assert.equal((await fetch(`${gateway.url}/health/live`)).status, 200, 'still live: nothing a restart would fix');
      process.stdout.write(`# Kafka lost: not ready after ${notReadyAfter} ms\n`);
    } finally {
      await broker.launcher('start');
    }
    const back = Date.now();
    await until(
      'both apps ready again',
      async () => (await ready(gateway)) === 200 && (await ready(consumer)) === 200,
      120000,
    );
    const res = await sendEvent(
      gateway.url,
      TEST_USERS.alice.token,
      '!lost:test.local',
      'm.room.message',
      `back-${Date.now()}`,
      { msgtype: 'm.text', body: 'x' },
    );
    assert.equal(res.status, 200);
    process.stdout.write(`# Kafka back: ready again after ${Date.now() - back} ms\n`);
  });
});
