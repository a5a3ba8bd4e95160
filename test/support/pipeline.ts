import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AppName, AppProcess, isolatedTopics } from '../../tools/harness/app-process';

export { AppName, AppProcess, freePort } from '../../tools/harness/app-process';

export const TEST_USERS = {
  alice: { token: 'test-token-alice-0001', user_id: '@alice:test.local', device_id: 'ALICEDEV' },
  /** Alice again, on a new token for the same device (a refresh): the same transaction scope. */
  aliceRefreshed: { token: 'test-token-alice-0002', user_id: '@alice:test.local', device_id: 'ALICEDEV' },
  /** Alice on another device: another scope. */
  alicePhone: { token: 'test-token-alice-0003', user_id: '@alice:test.local', device_id: 'ALICEPHONE' },
  bob: { token: 'test-token-bob-00001', user_id: '@bob:test.local', device_id: 'BOBDEV' },
} as const;

/** The scope-hash key of every test deployment (see SCOPE_HASH_SECRET), so tests can compute command partitions. */
export const TEST_SCOPE_HASH_SECRET = 'test-scope-hash-secret-0123456789abcdef';

/** A test deployment's settings: topics of its own, the test users' tokens, no rate limit. */
export function isolatedEnv(extra: Record<string, string> = {}): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'matrix-send-test-'));
  const tokensFile = join(dir, 'tokens.json');
  writeFileSync(tokensFile, JSON.stringify(Object.values(TEST_USERS)));
  return {
    KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092',
    ...isolatedTopics(),
    KAFKA_COMMAND_PARTITIONS: '4',
    KAFKA_EVENT_PARTITIONS: '4',
    MATRIX_SERVER_NAME: 'test.local',
    SCOPE_HASH_SECRET: TEST_SCOPE_HASH_SECRET,
    MATRIX_TOKENS_FILE: tokensFile,
    HTTP_HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    // Load tests send far faster than one user may; the rate-limit tests turn it back on.
    RATE_LIMIT_PER_SECOND: '0',
    ...extra,
  };
}

export interface Pipeline {
  env: Record<string, string>;
  gateway: AppProcess;
  consumer: AppProcess;
  stop(): Promise<void>;
}

/** One consumer and one gateway, as separate processes against the test broker. */
export async function startPipeline(extraEnv: Record<string, string> = {}): Promise<Pipeline> {
  const env = isolatedEnv(extraEnv);
  const consumer = await AppProcess.start('consumer', env);
  const gateway = await AppProcess.start('gateway', env);
  const pipeline: Pipeline = {
    env,
    gateway,
    consumer,
    // Stops whichever processes the test left in place (it may have replaced them).
    stop: async () => {
      await Promise.all([pipeline.gateway.stop(), pipeline.consumer.stop()]);
    },
  };
  return pipeline;
}

/** Runs an app that should not start (a refused configuration) to its exit: the exit code and its stderr. */
export function runToExit(
  name: Exclude<AppName, 'ceiling'>,
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const entry = resolve(__dirname, '../../apps', name, 'src', 'main.js');
  return new Promise((done) => {
    const child = execFile(
      process.execPath,
      [entry],
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (_e, _o, stderr) => done({ code: child.exitCode, stderr }),
    );
  });
}
