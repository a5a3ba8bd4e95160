import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const LAUNCHER = resolve(__dirname, '../../../tools/kafka-local/kafka-local.sh');

export interface Broker {
  brokers: string;
  /** Where it came from, for the test log. */
  source: 'KAFKA_BROKERS' | 'testcontainers' | 'kafka-local' | 'cluster';
  /** The brokers' processes on this machine, when known (the local launcher's), for the benchmark's CPU figures. */
  pids: number[];
  stop(): Promise<void>;
}

/**
 * The broker the tests run against, chosen in this order: `KAFKA_BROKERS` if set; a testcontainers Kafka if a
 * Docker engine answers; otherwise the project's local launcher (Kafka from Maven Central, no Docker needed).
 */
export async function provideBroker(): Promise<Broker> {
  const given = process.env.KAFKA_BROKERS;
  if (given) return { brokers: given, source: 'KAFKA_BROKERS', pids: [], stop: async () => undefined };

  const container = await startTestcontainer();
  if (container) return container;

  const wasRunning = await run('bash', [LAUNCHER, 'status']).then(
    () => true,
    () => false,
  );
  const { stdout } = await run('bash', [LAUNCHER, 'start'], { maxBuffer: 1 << 20 });
  return {
    brokers: stdout.trim().split('\n').pop()!,
    source: 'kafka-local',
    pids: await launcherPids({ ...process.env }),
    // A broker somebody else started (npm start, a previous run) stays up; one we started, we stop.
    stop: async () => {
      if (!wasRunning) await run('bash', [LAUNCHER, 'stop']);
    },
  };
}

/** The pids of the nodes the launcher runs with `env` (its `pids` command); none when it cannot tell. */
async function launcherPids(env: NodeJS.ProcessEnv): Promise<number[]> {
  const { stdout } = await run('bash', [LAUNCHER, 'pids'], { env }).catch(() => ({ stdout: '' }));
  return stdout
    .split('\n')
    .map(Number)
    .filter((pid) => pid > 0);
}

export interface PrivateBroker {
  brokers: string;
  /** With security: the settings the launcher wrote into client.env (KAFKA_BROKERS, KAFKA_SSL, KAFKA_SASL_...). */
  clientEnv: Record<string, string>;
  /** Runs the launcher on this broker or cluster: `stop`, `start`, `status`, `kill-node I`, `stop-node I`, … */
  launcher(...command: string[]): Promise<void>;
  /** The pids of its running nodes. */
  pids(): Promise<number[]>;
  stop(): Promise<void>;
}

/**
 * A base port with `count` free ports from it, `count` more 100 above (the launcher's controller ports) and 150
 * above (its internal listeners, with security).
 */
async function freePortBase(count: number): Promise<number> {
  const free = (port: number) =>
    new Promise<boolean>((done) => {
      const server = createServer();
      server.once('error', () => done(false));
      server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
    });
  for (;;) {
    // Below the ephemeral range (32768 and up), so that no outgoing connection takes a port meanwhile.
    const base = 10000 + Math.floor(Math.random() * 20000);
    const ports = Array.from({ length: count }, (_, i) => [base + i, base + 100 + i, base + 150 + i]).flat();
    if ((await Promise.all(ports.map(free))).every(Boolean)) return base;
  }
}

/**
 * A broker (or a cluster of `nodes`) of a test's own, from the local launcher on free ports and its own data (the
 * jars are shared): for tests that stop, kill and start brokers, so that they run whatever broker the other tests
 * use, and disturb none of them.
 */
export async function startPrivateBroker(
  nodes: 1 | 3 = 1,
  security: 'plaintext' | 'sasl_ssl' = 'plaintext',
): Promise<PrivateBroker> {
  const base = await freePortBase(nodes);
  const env = {
    ...process.env,
    KAFKA_LOCAL_SECURITY: security,
    KAFKA_LOCAL_BROKERS: String(nodes),
    KAFKA_LOCAL_DIR: mkdtempSync(join(tmpdir(), 'kafka-private-')),
    KAFKA_LOCAL_LIB: resolve(__dirname, '../../../.cache/kafka-local/lib'),
    KAFKA_LOCAL_PORT: String(base),
    KAFKA_LOCAL_CONTROLLER_PORT: String(base + 100),
    KAFKA_LOCAL_INTERNAL_PORT: String(base + 150),
    KAFKA_LOCAL_HEAP: '384m',
  };
  const launcher = async (...command: string[]): Promise<void> => {
    await run('bash', [LAUNCHER, ...command], { env, maxBuffer: 1 << 20 });
  };
  const { stdout } = await run('bash', [LAUNCHER, 'start'], { env, maxBuffer: 1 << 20 });
  const clientEnv =
    security === 'plaintext'
      ? {}
      : Object.fromEntries(
          readFileSync(join(env.KAFKA_LOCAL_DIR, 'client.env'), 'utf8')
            .trim()
            .split('\n')
            .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
        );
  return {
    brokers: stdout.trim().split('\n').pop()!,
    clientEnv,
    launcher,
    pids: () => launcherPids(env),
    stop: async () => {
      await launcher('stop');
      // KEEP_BROKER_DATA=1 keeps the brokers' logs and data for a look after a failure.
      if (process.env.KEEP_BROKER_DATA) process.stdout.write(`# broker data kept in ${env.KAFKA_LOCAL_DIR}\n`);
      else rmSync(env.KAFKA_LOCAL_DIR, { recursive: true, force: true });
    },
  };
}

async function startTestcontainer(): Promise<Broker | null> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
  } catch {
    return null; // no Docker engine here
  }
  const { KafkaContainer } = await import('@testcontainers/kafka');
  const container = await new KafkaContainer('confluentinc/cp-kafka:7.9.0').withKraft().start();
  return {
    brokers: `${container.getHost()}:${container.getMappedPort(9093)}`,
    source: 'testcontainers',
    pids: [],
    stop: async () => {
      await container.stop();
    },
  };
}
