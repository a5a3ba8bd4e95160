/**
 * `npm test`: provides a real Kafka broker (see broker.ts), runs every compiled test file with Node's test
 * runner against it, and stops the broker if it started one.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { provideBroker } from './broker';

async function main(): Promise<number> {
  const started = Date.now();
  const broker = await provideBroker();
  process.stdout.write(`tests use the Kafka broker at ${broker.brokers} (${broker.source}, ready in ${Date.now() - started} ms)\n`);
  const patterns = process.argv.slice(2);
  const files = patterns.length > 0 ? patterns : ['dist/**/*.spec.js'];
  const root = resolve(__dirname, '../../..');
  try {
    return await new Promise<number>((done) => {
      const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=600000', ...files], {
        cwd: root,
        stdio: 'inherit',
        env: { ...process.env, KAFKA_BROKERS: broker.brokers, KAFKA_TEST_BROKER_SOURCE: broker.source },
      });
      const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
      process.on('SIGINT', forward).on('SIGTERM', forward);
      child.on('exit', (code, signal) => done(code ?? (signal ? 1 : 0)));
    });
  } finally {
    await broker.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`test run failed before the tests: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
