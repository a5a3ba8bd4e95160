import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PrivateBroker, startPrivateBroker } from '../tools/harness/broker';
import { transactions } from './support/exactly-once';
import { runLoad } from './support/load';
import { AppProcess, freePort, isolatedEnv } from './support/pipeline';

const DIST = join(__dirname, '..');

/** Spawns an app that may never become ready, and keeps what it prints. */
function spawnApp(
  entry: string,
  env: Record<string, string>,
  args: string[] = [],
): { child: ChildProcess; output: string[] } {
  const child = spawn(process.execPath, [join(DIST, entry), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  return { child, output };
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

describe('a cluster that requires TLS and SASL (SASL_SSL), as a managed service does', () => {
  let broker: PrivateBroker;
  let password: string;
  before(async () => {
    broker = await startPrivateBroker(1, 'sasl_ssl');
    password = readFileSync(broker.clientEnv.KAFKA_SASL_PASSWORD_FILE, 'utf8').trim();
  });
  after(async () => {
    await broker?.stop();
  });

  it('accepts sends end to end with each SASL mechanism over TLS, and the events CLI reads them back', async () => {
    const env = isolatedEnv({ ...broker.clientEnv, LOG_LEVEL: 'info' });
    // One mechanism each: the gateway, the consumer and the CLI all authenticate on their own.
    const consumer = await AppProcess.start('consumer', { ...env, KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256' });
    const gateway = await AppProcess.start('gateway', { ...env, KAFKA_SASL_MECHANISM: 'PLAIN' });
    let cli: ReturnType<typeof spawnApp> | undefined;
    try {
      const outcomes = await runLoad(() => gateway.url, transactions('tls', 60), { concurrency: 8 });
      assert.deepEqual(
        outcomes.flatMap((o) => o.failures),
        [],
        'every send answered 200',
      );
      const answered = outcomes.map((o) => o.eventIds[0]);
      assert.ok(
        outcomes.every((o) => new Set(o.eventIds).size === 1),
        'a retry gets the same event',
      );

      cli = spawnApp('tools/events-cli.js', { ...env, KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512' }, [
        'tail',
        '--from-start',
      ]);
      const seen = (): string[] =>
        cli!.output
          .join('')
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => (JSON.parse(line) as { event_id: string }).event_id);
      await until(
        () => seen().length >= answered.length,
        60000,
        `the CLI to print ${answered.length} events:\n${cli.output.join('')}`,
      );
      assert.deepEqual([...seen()].sort(), [...answered].sort(), 'the CLI read every answered event, once');

      const printed = [...consumer.output, ...gateway.output, ...cli.output].join('');
      assert.doesNotMatch(printed, new RegExp(password), 'no password in any log');
      assert.match(
        gateway.output.join(''),
        /TLS \(CA from KAFKA_SSL_CA_FILE\), SASL PLAIN as matrix/,
        'the gateway says how it connects',
      );
    } finally {
      cli?.child.kill('SIGTERM');
      await Promise.all([gateway.stop(), consumer.stop()]);
    }
  });

  it('with a wrong password: a clear error, live but not ready, and no restart loop', async () => {
    const env = isolatedEnv({
      ...broker.clientEnv,
      KAFKA_SASL_PASSWORD_FILE: '',
      KAFKA_SASL_PASSWORD: 'not-the-password',
    });
    const ports = {
      GATEWAY_PORT: String(await freePort()),
      CONSUMER_PORT: String(await freePort()),
      GATEWAY_METRICS_PORT: String(await freePort()),
      CONSUMER_METRICS_PORT: String(await freePort()),
    };
    const apps = [
      {
        name: 'gateway',
        url: `http://127.0.0.1:${ports.GATEWAY_PORT}`,
        ...spawnApp('apps/gateway/src/main.js', { ...env, ...ports }),
      },
      {
        name: 'consumer',
        url: `http://127.0.0.1:${ports.CONSUMER_PORT}`,
        ...spawnApp('apps/consumer/src/main.js', { ...env, ...ports }),
      },
    ];
    try {
      for (const app of apps) {
        await until(
          () => app.output.join('').includes('Kafka refused the credentials'),
          30000,
          `${app.name}'s error line`,
        );
        await new Promise((done) => setTimeout(done, 3000)); // a few more attempts
        assert.equal(app.child.exitCode, null, `${app.name} keeps running`);
        assert.equal((await fetch(`${app.url}/health/live`)).status, 200, `${app.name} is live`);
        assert.equal((await fetch(`${app.url}/health/ready`)).status, 503, `${app.name} is not ready`);
        const printed = app.output.join('');
        assert.match(printed, /check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and the password/);
        assert.doesNotMatch(printed, /not-the-password/, 'the password is not printed');
      }
    } finally {
      for (const app of apps) app.child.kill('SIGKILL');
    }
  });
});
