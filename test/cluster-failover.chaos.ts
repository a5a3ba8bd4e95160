import '@app/kafka'; // before kafkajs: patches its read_committed filter
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigResourceTypes, Kafka, logLevel } from 'kafkajs';
import { PrivateBroker, startPrivateBroker } from '../tools/harness/broker';
import { assertExactlyOnce, transactions } from './support/exactly-once';
import { runLoad } from './support/load';
import { AppProcess, isolatedEnv } from './support/pipeline';

const SEND_TIMEOUT_MS = 3000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A three-broker cluster of the test's own, replication 3: the shape of a production deployment. */
describe('a three-broker cluster', () => {
  let cluster: PrivateBroker;
  let env: Record<string, string>;
  let kafka: Kafka;
  let gateway: AppProcess;
  let consumer: AppProcess;
  before(async () => {
    cluster = await startPrivateBroker(3);
    env = isolatedEnv({
      KAFKA_BROKERS: cluster.brokers,
      SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
      CONSUMER_SESSION_TIMEOUT_MS: '6000',
    });
    kafka = new Kafka({ brokers: cluster.brokers.split(','), logLevel: logLevel.NOTHING });
    consumer = await AppProcess.start('consumer', env);
    gateway = await AppProcess.start('gateway', env);
  });
  after(async () => {
    await Promise.all([gateway, consumer].map((app) => app?.stop().catch(() => app.kill())));
    await cluster?.stop();
  });

  it('creates every topic with replication 3 and min.insync.replicas=2, the event log without a time limit', async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const topics = (await admin.listTopics()).filter((topic) =>
        topic.startsWith(env.KAFKA_TOPIC_COMMANDS.replace(/\.commands$/, '')),
      );
      assert.ok(topics.length >= 7, `the pipeline's topics and the reply topic: ${topics.join(', ')}`);
      const metadata = await admin.fetchTopicMetadata({ topics });
      for (const topic of metadata.topics) {
        for (const partition of topic.partitions)
          assert.equal(partition.replicas.length, 3, `${topic.name}/${partition.partitionId}`);
      }
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: topics.map((name) => ({
          type: ConfigResourceTypes.TOPIC,
          name,
          configNames: ['min.insync.replicas', 'retention.ms'],
        })),
      });
      for (const resource of resources) {
        const value = (name: string) => resource.configEntries.find((entry) => entry.configName === name)?.configValue;
        assert.equal(value('min.insync.replicas'), '2', resource.resourceName);
        if (resource.resourceName === env.KAFKA_TOPIC_EVENTS) assert.equal(value('retention.ms'), '-1');
      }
    } finally {
      await admin.disconnect();
    }
  });

  it('loses and doubles nothing when the busiest broker is killed, comes back, and all three restart in turn', async () => {
    const admin = kafka.admin();
    await admin.connect();
    const [commands] = (await admin.fetchTopicMetadata({ topics: [env.KAFKA_TOPIC_COMMANDS] })).topics;
    await admin.disconnect();
    const leads = new Map<number, number>();
    for (const partition of commands.partitions) leads.set(partition.leader, (leads.get(partition.leader) ?? 0) + 1);
    const busiest = [...leads].sort((a, b) => b[1] - a[1])[0][0];

    const done: number[] = [];
    let chaosOver = false;
    let killedAt = 0;
    const chaos = (async () => {
      await sleep(5000); // steady load first
      killedAt = Date.now();
      const before = await cluster.pids();
      assert.equal(before.length, 3, 'a pid per node');
      await cluster.launcher('kill-node', String(busiest));
      // The launcher's pids (the benchmark's CPU figures) are those of the nodes that run.
      assert.deepEqual(
        await cluster.pids(),
        before.filter((_, i) => i !== busiest - 1),
        'pids of the live nodes',
      );
      await sleep(5000);
      await cluster.launcher('start-node', String(busiest));
      for (const node of [1, 2, 3]) {
        await cluster.launcher('stop-node', String(node));
        await cluster.launcher('start-node', String(node));
      }
      await sleep(5000); // steady load after
      chaosOver = true;
    })();
    const outcomes = await runLoad(() => gateway.url, transactions('failover', 100_000), {
      concurrency: 16,
      maxAttempts: 400,
      shouldStop: () => chaosOver,
      onDone: (_outcome, at) => done.push(at),
    });
    await chaos;

    const retried = outcomes.filter((o) => o.retryable.length > 0);
    assert.ok(retried.length > 0, 'clients felt the failures (otherwise this proves nothing)');
    assert.ok(
      retried.every((o) => o.retryable.every((status) => status === 503 || status === 0)),
      'only retryable answers: 503 or a lost connection',
    );
    await assertExactlyOnce(env, outcomes);
    const longest = Math.max(...outcomes.map((o) => o.longestWaitMs));
    // Throughput before the kill, and how long after it until a second runs at half that rate again.
    const perSecond = (from: number) => done.filter((at) => at >= from && at < from + 1000).length;
    const before = perSecond(killedAt - 2000);
    let recovered = killedAt;
    while (recovered < Date.now() && perSecond(recovered) < before / 2) recovered += 250;
    process.stdout.write(
      `# failover: ${outcomes.length} transactions (${outcomes.reduce((n, o) => n + o.eventIds.length, 0)} sends answered 200), ` +
        `${retried.length} needed retries (${outcomes.reduce((n, o) => n + o.retryable.length, 0)} retries), lost 0, doubled 0, ` +
        `longest client wait ${longest} ms, ${before}/s before the kill, half that again ${recovered - killedAt} ms after it\n`,
    );
    assert.ok(recovered < Date.now(), 'throughput recovered by itself');
  });
});
