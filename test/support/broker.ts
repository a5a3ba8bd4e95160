import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const LAUNCHER = resolve(__dirname, '../../../tools/kafka-local/kafka-local.sh');

export interface Broker {
  brokers: string;
  /** Where it came from, for the test log. */
  source: 'KAFKA_BROKERS' | 'testcontainers' | 'kafka-local';
  stop(): Promise<void>;
}

/**
 * The broker the tests run against, chosen in this order: `KAFKA_BROKERS` if set; a testcontainers Kafka if a
 * Docker engine answers; otherwise the project's local launcher (Kafka from Maven Central, no Docker needed).
 */
export async function provideBroker(): Promise<Broker> {
  const given = process.env.KAFKA_BROKERS;
  if (given) return { brokers: given, source: 'KAFKA_BROKERS', stop: async () => undefined };

  const container = await startTestcontainer();
  if (container) return container;

  const wasRunning = await run('bash', [LAUNCHER, 'status']).then(() => true, () => false);
  const { stdout } = await run('bash', [LAUNCHER, 'start'], { maxBuffer: 1 << 20 });
  return {
    brokers: stdout.trim().split('\n').pop()!,
    source: 'kafka-local',
    // A broker somebody else started (npm start, a previous run) stays up; one we started, we stop.
    stop: async () => {
      if (!wasRunning) await run('bash', [LAUNCHER, 'stop']);
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
    stop: async () => {
      await container.stop();
    },
  };
}
