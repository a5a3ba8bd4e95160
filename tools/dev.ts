/**
 * `npm start`: the whole pipeline on one machine for development. Starts a local Kafka broker unless
 * KAFKA_BROKERS is set, creates a development access token unless MATRIX_TOKENS_FILE is set and a development
 * scope-hash secret unless SCOPE_HASH_SECRET or SCOPE_HASH_SECRET_FILE is, runs the consumer and the gateway, and
 * prints how to send a message. Ctrl-C stops everything it started.
 */
/* eslint-disable no-console -- this is a terminal program */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEV_SCOPE_HASH_SECRET_FILE, developmentScopeHashSecretFile, loadConfig } from '@app/config';

const root = resolve(__dirname, '../..');
const launcher = join(root, 'tools/kafka-local/kafka-local.sh');
const children: ChildProcess[] = [];
let startedBroker = false;
let stopping = false;

function devTokensFile(): { file: string; token: string; userId: string } {
  const file = join(root, '.cache/dev-tokens.json');
  const userId = '@dev:localhost';
  if (!existsSync(file)) {
    mkdirSync(join(root, '.cache'), { recursive: true });
    const token = `dev_${randomBytes(18).toString('base64url')}`;
    writeFileSync(file, JSON.stringify([{ token, user_id: userId, device_id: 'DEVDEVICE' }], null, 2), { mode: 0o600 });
  }
  const [{ token, user_id }] = JSON.parse(readFileSync(file, 'utf8')) as { token: string; user_id: string }[];
  return { file, token, userId: user_id };
}

async function waitReady(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`${url} exited with code ${child.exitCode}`);
    if (
      await fetch(`${url}/health/ready`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`${url} did not become ready in 60 s`);
}

/** Restarts within this window that make npm start give up rather than restart again. */
const RESTARTS_WINDOW_MS = 60_000;
const MAX_RESTARTS = 5;

/**
 * Runs an app and, like any supervisor, starts it again when it exits on its own (an app that can no longer work
 * exits non-zero for exactly that); an app that keeps dying stops everything.
 */
function startApp(name: string, env: NodeJS.ProcessEnv, restarts: number[] = []): ChildProcess {
  const child = spawn(process.execPath, [join(root, `dist/apps/${name}/src/main.js`)], { env, stdio: 'inherit' });
  child.on('exit', (code, signal) => {
    if (stopping) return;
    const recent = [...restarts, Date.now()].filter((at) => at > Date.now() - RESTARTS_WINDOW_MS);
    if (recent.length > MAX_RESTARTS) {
      console.error(`${name} stopped (${signal ?? code}) ${recent.length} times in a minute; stopping the rest`);
      void shutdown(1);
      return;
    }
    console.error(`${name} stopped (${signal ?? code}); starting it again`);
    setTimeout(() => stopping || startApp(name, env, recent), 1000);
  });
  children.push(child);
  return child;
}

async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
  await Promise.all(
    running.map(
      (child) =>
        new Promise((done) => {
          child.once('exit', done);
          child.kill('SIGTERM');
        }),
    ),
  );
  if (startedBroker) execFileSync('bash', [launcher, 'stop'], { stdio: 'inherit' });
  process.exit(code);
}

async function main(): Promise<void> {
  const env: NodeJS.ProcessEnv = { LOG_FORMAT: 'pretty', ...process.env };
  if (!env.KAFKA_BROKERS) {
    startedBroker = !tryStatus();
    env.KAFKA_BROKERS = execFileSync('bash', [launcher, 'start'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
  }
  let token = '<your access token>';
  if (!env.MATRIX_TOKENS_FILE) {
    const dev = devTokensFile();
    env.MATRIX_TOKENS_FILE = dev.file;
    token = dev.token;
  }
  if (!env.SCOPE_HASH_SECRET && !env.SCOPE_HASH_SECRET_FILE) {
    env.SCOPE_HASH_SECRET_FILE = developmentScopeHashSecretFile(join(root, DEV_SCOPE_HASH_SECRET_FILE));
    console.log(`npm start: scope hashes keyed with the development secret in ${DEV_SCOPE_HASH_SECRET_FILE}`);
  }
  const config = loadConfig(env); // a bad setting stops here, before anything starts
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  const consumer = startApp('consumer', env);
  await waitReady(`http://127.0.0.1:${config.CONSUMER_PORT}`, consumer);
  const gateway = startApp('gateway', env);
  const url = `http://127.0.0.1:${config.GATEWAY_PORT}`;
  await waitReady(url, gateway);

  console.log(`
  Matrix send pipeline is up.
    gateway:   ${url}
    metrics:   http://${config.METRICS_HOST}:${config.GATEWAY_METRICS_PORT}/metrics (gateway), :${config.CONSUMER_METRICS_PORT} (consumer)
    Kafka:     ${env.KAFKA_BROKERS}${startedBroker ? ' (local broker, stopped on Ctrl-C)' : ''}
    token:     ${token}

  Send a message:
    curl -X PUT -H 'Authorization: Bearer ${token}' -d '{"msgtype":"m.text","body":"hello"}' \\
      '${url}/_matrix/client/v3/rooms/!room:${config.MATRIX_SERVER_NAME}/send/m.room.message/txn1'

  Ctrl-C stops everything.
`);
}

function tryStatus(): boolean {
  try {
    execFileSync('bash', [launcher, 'status'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

main().catch((error: unknown) => {
  console.error(`npm start failed: ${error instanceof Error ? error.message : String(error)}`);
  void shutdown(1);
});
