import '@app/kafka'; // before kafkajs: patches its read_committed filter
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertExactlyOnce, transactions } from './support/exactly-once';
import { runLoad } from './support/load';
import { AppProcess, isolatedEnv } from './support/pipeline';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The drill an orchestrator runs on every upgrade: each instance replaced one at a time (SIGTERM, a new one started,
 * next once it is ready), gateways taken out of the load balancer before they are stopped, as readiness does.
 */
describe('a rolling upgrade', () => {
  it('replaces two gateways and two consumers one at a time, twice around, under load: only 200 or a retryable 503, every answered event in the log once', async () => {
    const env = isolatedEnv({
      SEND_TIMEOUT_MS: '3000',
      CONSUMER_SESSION_TIMEOUT_MS: '6000',
      // Fetches that wait for more commands: the settings the benchmark tunes, for a steady load worth measuring.
      CONSUMER_FETCH_MAX_WAIT_MS: '50',
    });
    const consumers = [await AppProcess.start('consumer', env), await AppProcess.start('consumer', env)];
    const gateways = [await AppProcess.start('gateway', env), await AppProcess.start('gateway', env)];
    /** The load balancer's rotation: the gateways that are ready and not being stopped. */
    const rotation = new Set(gateways);
    let turn = 0;
    const nextGateway = () => {
      const ready = [...rotation];
      return ready[turn++ % ready.length].url;
    };
    const done: number[] = [];
    const steps: { what: string; at: number; ms: number }[] = [];
    let drillStarted = 0;
    let drillEnded = 0;
    let over = false;
    const drill = (async () => {
      await sleep(6000); // steady load first, the baseline
      drillStarted = Date.now();
      for (let round = 0; round < 2; round++) {
        for (const [kind, index] of [
          ['gateway', 0],
          ['consumer', 0],
          ['gateway', 1],
          ['consumer', 1],
        ] as const) {
          const started = Date.now();
          if (kind === 'gateway') {
            const old = gateways[index];
            rotation.delete(old); // readiness turns false on SIGTERM: the load balancer stops sending
            await old.stop();
            gateways[index] = await AppProcess.start('gateway', env);
            rotation.add(gateways[index]);
          } else {
            await consumers[index].stop();
            consumers[index] = await AppProcess.start('consumer', env);
          }
          steps.push({ what: `${kind} ${index + 1}`, at: started, ms: Date.now() - started });
        }
      }
      drillEnded = Date.now();
      await sleep(4000); // steady load after
      over = true;
    })();
    try {
      const outcomes = await runLoad(nextGateway, transactions('rolling', 1_000_000), {
        concurrency: 16,
        maxAttempts: 400,
        shouldStop: () => over,
        onDone: (_outcome, at) => done.push(at),
      });
      await drill;

      const statuses = new Set(outcomes.flatMap((o) => o.retryable));
      assert.deepEqual(
        [...statuses].filter((status) => status !== 503),
        [],
        'no client saw anything but 200 or a retryable 503',
      );
      await assertExactlyOnce(env, outcomes);

      const perSecond = (from: number) => done.filter((at) => at >= from && at < from + 1000).length;
      const seconds = (from: number, to: number) =>
        Array.from({ length: Math.floor((to - from) / 1000) }, (_, i) => perSecond(from + i * 1000));
      // Steady throughput: the seconds before the drill (after the first two, a warm-up) and after it.
      const steady = [...seconds(drillStarted - 4000, drillStarted), ...seconds(drillEnded, drillEnded + 4000)];
      const during = seconds(drillStarted, drillEnded);
      const mean = (values: number[]) => Math.round(values.reduce((a, b) => a + b, 0) / values.length);
      const retried = outcomes.filter((o) => o.retryable.length > 0);
      const longest = Math.max(...outcomes.map((o) => o.longestWaitMs));
      process.stdout.write(
        `# rolling upgrade: ${steps.length} replacements in ${Math.round((drillEnded - drillStarted) / 1000)} s ` +
          `(${steps.map((s) => `${s.what} ${(s.ms / 1000).toFixed(1)} s`).join(', ')}); ` +
          `${outcomes.length} transactions, ${retried.length} needed retries ` +
          `(${outcomes.reduce((n, o) => n + o.retryable.length, 0)} 503s), lost 0, doubled 0; ` +
          `longest client wait ${longest} ms; throughput ${mean(steady)}/s steady, ${mean(during)}/s during the drill ` +
          `(${Math.round((100 * mean(during)) / mean(steady))}%), slowest second ${Math.min(...during)}/s\n`,
      );
      assert.ok(steps.length === 8, 'every instance was replaced twice');
      for (const step of steps)
        assert.ok(
          done.some((at) => at >= step.at && at <= step.at + step.ms),
          `sends were answered while ${step.what} was replaced`,
        );
    } finally {
      await Promise.all([...gateways, ...consumers].map((app) => app.stop().catch(() => app.kill())));
    }
  });
});
