/**
 * `npm test`: provides a real Kafka broker (see broker.ts), runs every compiled test file with Node's test
 * runner against it, and stops the broker if it started one.
 * `npm run test:unit` (`--unit`): no broker, the specs not named `*.e2e.spec.ts`, each test bounded to 60 s.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { provideBroker } from '../../tools/harness/broker';

/** Every spec that needs no broker: those that do are named `*.e2e.spec.ts`. */
const UNIT_SPECS = 'dist/**/!(*.e2e).spec.js';

async function main(): Promise<number> {
  const unit = process.argv[2] === '--unit';
  const patterns = process.argv.slice(unit ? 3 : 2);
  const started = Date.now();
  const broker = unit ? undefined : await provideBroker();
  if (broker)
    process.stdout.write(
      `tests use the Kafka broker at ${broker.brokers} (${broker.source}, ready in ${Date.now() - started} ms)\n`,
    );
  const files = patterns.length > 0 ? patterns : [unit ? UNIT_SPECS : 'dist/**/*.spec.js'];
  // Unit tests may run side by side; end-to-end tests share one broker and the machine's cores, one file at a time.
  const limits = unit ? ['--test-timeout=60000'] : ['--test-concurrency=1', '--test-timeout=600000'];
  const root = resolve(__dirname, '../../..');
  // A second reporter writes TAP to a file, whose summary says how many tests ran and how many were skipped.
  const tap = join(mkdtempSync(join(tmpdir(), 'test-run-')), 'results.tap');
  const reporters = [
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
  ];
  try {
    const code = await new Promise<number>((done) => {
      const child = spawn(process.execPath, ['--test', ...limits, ...reporters, ...files], {
        cwd: root,
        stdio: 'inherit',
        env: broker
          ? { ...process.env, KAFKA_BROKERS: broker.brokers, KAFKA_TEST_BROKER_SOURCE: broker.source }
          : process.env,
      });
      const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
      process.on('SIGINT', forward).on('SIGTERM', forward);
      child.on('exit', (code, signal) => done(code ?? (signal ? 1 : 0)));
    });
    return code === 0 ? noSilentSkips(readFileSync(tap, 'utf8')) : code;
  } finally {
    await broker?.stop();
  }
}

/** A run that skipped a test, or ran none, proves less than it says: it fails. */
function noSilentSkips(tap: string): number {
  const count = (name: string): number => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(tap)?.[1] ?? NaN);
  const [tests, skipped, todo] = [count('tests'), count('skipped'), count('todo')];
  if (!(tests > 0)) {
    process.stderr.write('test run failed: no test ran\n');
    return 1;
  }
  if (skipped > 0 || todo > 0) {
    const names = tap.split('\n').filter((line) => / # (SKIP|TODO)\b/.test(line));
    process.stderr.write(
      `test run failed: ${skipped} skipped and ${todo} todo tests, and every test must run:\n${names.join('\n')}\n`,
    );
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `test run failed before the tests: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exit(1);
  },
);
