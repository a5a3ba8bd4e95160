import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { assertExactlyOnce, transactions } from './support/exactly-once';
import { runLoad } from './support/load';
import { AppProcess, isolatedEnv } from './support/pipeline';

const SEND_TIMEOUT_MS = 2000;
/** A request may take the wait bound plus the time to publish and to answer. */
const WAIT_BOUND_MS = SEND_TIMEOUT_MS + 1500;
const run = promisify(execFile);

describe('a broker restart during load', { skip: process.env.KAFKA_TEST_BROKER_SOURCE !== 'kafka-local' && 'needs the local broker, which the test can restart' }, () => {
  const env = isolatedEnv({ SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS), CONSUMER_SESSION_TIMEOUT_MS: '6000' });
  let gateway: AppProcess;
  let consumer: AppProcess;
  const launcher = resolve(__dirname, '../../tools/kafka-local/kafka-local.sh');
  before(async () => {
    consumer = await AppProcess.start('consumer', env);
    gateway = await AppProcess.start('gateway', env);
  });
  after(async () => {
    await run('bash', [launcher, 'start']).catch(() => undefined);
    await Promise.all([gateway, consumer].map((app) => app?.stop().catch(() => app.kill())));
  });

  it('gives clients retryable errors, never a wrong 200, and resumes by itself', async () => {
    let restarted: Promise<unknown> | undefined;
    const outcomes = await runLoad(() => gateway.url, transactions('broker', 1500), {
      concurrency: 16,
      maxAttempts: 400,
      onProgress: (done) => {
        if (done === 300) {
          restarted = run('bash', [launcher, 'stop']).then(() => new Promise((r) => setTimeout(r, 3000))).then(() => run('bash', [launcher, 'start']));
        }
      },
    });
    await restarted;
    const retried = outcomes.filter((o) => o.retryable.length > 0);
    assert.ok(retried.length > 0, 'clients felt the outage');
    assert.ok(retried.every((o) => o.retryable.every((status) => status === 503 || status === 0)), 'only retryable answers during the outage');
    await assertExactlyOnce(env, outcomes);
    const longest = Math.max(...outcomes.map((o) => o.longestWaitMs));
    assert.ok(longest <= WAIT_BOUND_MS + 2000, `requests stayed bounded during the outage (longest ${longest} ms)`);
    const ready = await fetch(`${gateway.url}/health/ready`);
    assert.equal(ready.status, 200, 'the gateway is ready again without a restart');
    process.stdout.write(`# broker restart: ${outcomes.length} transactions, ${retried.length} retried, longest wait ${longest} ms\n`);
  });
});
