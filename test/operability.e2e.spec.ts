import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, connect, Server } from 'node:net';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import '@app/kafka';
import { AssignerProtocol, ConfigResourceTypes, Kafka, logLevel, PartitionAssigner } from 'kafkajs';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { readTopic } from './support/event-log';
import { sendEvent } from './support/matrix-client';
import {
  AppProcess,
  freePort,
  isolatedEnv,
  Pipeline,
  runToExit,
  startPipeline,
  TEST_SCOPE_HASH_SECRET,
  TEST_USERS,
} from './support/pipeline';
import { scrapeMetrics } from './support/metrics';

const run = promisify(execFile);
const DIST = resolve(__dirname, '..');
const REPO = resolve(DIST, '..');

async function until(condition: () => boolean, what: string, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 50));
  }
}

const sum = (series: Map<string, number>, prefix: string) =>
  [...series].filter(([name]) => name.startsWith(prefix)).reduce((total, [, value]) => total + value, 0);

describe('operability', () => {
  let pipeline: Pipeline;
  before(async () => {
    pipeline = await startPipeline({ LOG_LEVEL: 'debug' });
  });
  after(async () => {
    await pipeline?.stop();
  });

  it('exposes the named metrics on /metrics of both apps, and they move when sends happen', async () => {
    const beforeGateway = await scrapeMetrics(pipeline.gateway.metricsUrl);
    const beforeConsumer = await scrapeMetrics(pipeline.consumer.metricsUrl);
    const room = `!metrics-${randomUUID()}:test.local`;
    for (let i = 0; i < 3; i++)
      await sendEvent(pipeline.gateway.url, TEST_USERS.alice.token, room, 'm.room.message', `metrics-${i}`, {
        msgtype: 'm.text',
        body: 'x',
      });
    await sendEvent(pipeline.gateway.url, TEST_USERS.alice.token, room, 'm.room.message', 'metrics-0', {
      msgtype: 'm.text',
      body: 'retry',
    });
    await sendEvent(pipeline.gateway.url, TEST_USERS.alice.token, room, 'm.room.message', 'metrics-bad', '{"a":1.5}');
    const gateway = await scrapeMetrics(pipeline.gateway.metricsUrl);
    const consumer = await scrapeMetrics(pipeline.consumer.metricsUrl);

    assert.equal(
      sum(gateway, 'matrix_gateway_requests_total{route="send",status="200"') -
        sum(beforeGateway, 'matrix_gateway_requests_total{route="send",status="200"'),
      4,
    );
    assert.equal(gateway.get('matrix_gateway_requests_total{route="send",status="400",errcode="M_BAD_JSON"}'), 1);
    assert.ok(sum(gateway, 'matrix_gateway_send_duration_seconds_count') >= 5);
    assert.ok(
      sum(gateway, 'matrix_kafka_produce_duration_seconds_count') >
        sum(beforeGateway, 'matrix_kafka_produce_duration_seconds_count'),
    );
    assert.ok(gateway.has('matrix_gateway_requests_in_flight'));
    assert.ok(gateway.has('matrix_gateway_reply_timeouts_total'));

    assert.equal(
      sum(consumer, 'matrix_consumer_events_appended_total{stage="send"}') -
        sum(beforeConsumer, 'matrix_consumer_events_appended_total{stage="send"}'),
      3,
    );
    assert.equal(
      sum(consumer, 'matrix_consumer_dedup_hits_total') - sum(beforeConsumer, 'matrix_consumer_dedup_hits_total'),
      1,
    );
    assert.ok(sum(consumer, 'matrix_consumer_transactions_total{stage="send",outcome="committed"}') > 0);
    assert.ok(sum(consumer, 'matrix_consumer_batch_size_count') > 0);
    assert.ok(sum(consumer, 'matrix_consumer_batch_duration_seconds_count') > 0);
    assert.ok((consumer.get('matrix_consumer_state_entries{stage="send"}') ?? 0) >= 3);
    assert.ok(sum(consumer, 'matrix_consumer_restore_duration_seconds_count') > 0);
    assert.ok([...consumer.keys()].some((name) => name.startsWith('matrix_consumer_lag{stage="send",partition=')));
    assert.ok(consumer.has('matrix_consumer_annotation_rejections_total'));
    // Bounded labels only: nothing that names a room, a user or a transaction.
    for (const name of [...gateway.keys(), ...consumer.keys()]) assert.doesNotMatch(name, /test\.local|metrics-\d|@/);
  });

  it('serves every series that the shipped Grafana dashboard and Prometheus alert rules query', async () => {
    const exposed = new Set<string>(['up']); // recorded by Prometheus itself, for every target
    for (const url of [pipeline.gateway.metricsUrl, pipeline.consumer.metricsUrl]) {
      for (const [, name, type] of (await (await fetch(url)).text()).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        exposed.add(name);
        if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exposed.add(name + suffix);
      }
    }
    const dashboard = JSON.parse(readFileSync(join(REPO, 'monitoring', 'grafana-dashboard.json'), 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const rules = (
      parseYaml(readFileSync(join(REPO, 'monitoring', 'alerts.yml'), 'utf8')) as {
        groups: { rules: { alert: string; expr: string }[] }[];
      }
    ).groups.flatMap((g) => g.rules);
    const queries = [
      ...dashboard.panels.flatMap((panel) => panel.targets.map((t) => t.expr)),
      ...rules.map((rule) => rule.expr),
    ];
    assert.ok(rules.length >= 8 && dashboard.panels.length >= 10, 'the files hold the rules and panels');
    const queried = new Set(
      queries.flatMap((expr) =>
        [...expr.matchAll(/\b(?:matrix|process|nodejs)_[a-z0-9_]+|\bup(?=\{)/g)].map(([name]) => name),
      ),
    );
    assert.deepEqual(
      [...queried].filter((name) => !exposed.has(name)),
      [],
      'series queried but not on /metrics',
    );
    for (const wanted of [
      'matrix_consumer_lag',
      'matrix_gateway_reply_timeouts_total',
      'matrix_consumer_dead_letters_total',
      'matrix_ready',
      'matrix_consumer_state_budget_entries',
    ]) {
      assert.ok(
        rules.some((rule) => rule.expr.includes(wanted)),
        `an alert on ${wanted}`,
      );
    }
  });

  it('shows the readiness of each component as matrix_ready', async () => {
    const gateway = await scrapeMetrics(pipeline.gateway.metricsUrl);
    const consumer = await scrapeMetrics(pipeline.consumer.metricsUrl);
    assert.equal(gateway.get('matrix_ready{component="gateway"}'), 1);
    assert.equal(consumer.get('matrix_ready{component="send"}'), 1);
    assert.equal(consumer.get('matrix_ready{component="annotation"}'), 1);
  });

  it("logs no token and no message content, even for failures, and one line per failure with the command's correlation id", async () => {
    const secretToken = TEST_USERS.bob.token;
    const marker = `secret-body-${randomUUID()}`;
    const lonelyEnv = isolatedEnv({ SEND_TIMEOUT_MS: '300', LOG_LEVEL: 'debug' });
    const lonely = await AppProcess.start('gateway', lonelyEnv);
    const apps = [pipeline.gateway, pipeline.consumer, lonely];
    const outputBefore = apps.map((app) => app.output.length);
    try {
      // Room ID localparts may hold control characters (spec: appendices, "Room IDs"): none reaches a log raw.
      const room = `!logs-\u001b[2J\n\u0085\u2028-${randomUUID()}:test.local`;
      await sendEvent(pipeline.gateway.url, secretToken, room, 'm.room.message', `logs-ok-${randomUUID()}`, {
        msgtype: 'm.text',
        body: marker,
      });
      await sendEvent(
        pipeline.gateway.url,
        secretToken,
        room,
        'm.room.message',
        `logs-bad-${randomUUID()}`,
        `{"body":"${marker}", "n": 1.5}`,
      );
      const badMentions = await sendEvent(pipeline.gateway.url, secretToken, room, 'm.room.message', 'logs-mentions', {
        msgtype: 'm.text',
        body: marker,
        'm.mentions': { user_ids: marker },
      });
      assert.equal(badMentions.status, 400, 'a rule refused it, and its error names no content');
      // An oversized integer is content too: the error quotes a few of its digits, the log none.
      const digits = `9${Array.from(randomUUID().replace(/-/g, ''))
        .map((c) => parseInt(c, 16) % 10)
        .join('')}`;
      const outOfRange = await sendEvent(
        pipeline.gateway.url,
        secretToken,
        room,
        'm.room.message',
        `logs-int-${randomUUID()}`,
        `{"n": ${digits.repeat(2000)}}`,
      );
      assert.equal(outOfRange.body.errcode, 'M_BAD_JSON');
      assert.ok(String(outOfRange.body.error).length < 200, 'the error quotes a bounded part of the value');
      await sendEvent(pipeline.gateway.url, 'not-a-token-' + marker, room, 'm.room.message', 'logs-unknown', {
        msgtype: 'm.text',
        body: marker,
      });
      await fetch(
        `${pipeline.gateway.url}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/q?access_token=${secretToken}`,
        {
          method: 'PUT',
          body: `{"body":"${marker}"`,
        },
      );
      const timeoutTxn = `logs-timeout-${randomUUID()}`;
      const timedOut = await sendEvent(lonely.url, secretToken, room, 'm.room.message', timeoutTxn, {
        msgtype: 'm.text',
        body: marker,
      });
      assert.equal(timedOut.status, 503);
      const failureLines = (): string[] =>
        lonely.output
          .join('')
          .split('\n')
          .filter((line) => line.includes('answered 503'));
      await until(() => failureLines().length > 0, 'the failure line');
      const logs = apps.map((app, i) => app.output.slice(outputBefore[i]).join('')).join('');
      assert.ok(!logs.includes(secretToken), 'no access token in the logs');
      assert.ok(!logs.includes(marker), 'no message content in the logs');
      // eslint-disable-next-line no-control-regex -- control characters are what must not be there
      assert.ok(!/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029]/.test(logs), 'no raw control character');
      assert.ok(logs.includes('integer out of range'), 'the premise: the out-of-range integer was logged at debug');
      assert.ok(!logs.includes(digits.slice(0, 12)), 'no digits of the integer in the logs');
      assert.equal(failureLines().length, 1, 'one line for the failure');
      const [line] = failureLines();
      assert.doesNotThrow(() => JSON.parse(line), 'structured JSON');
      const loggedId = /correlation id ([0-9a-f-]{36})/.exec(line)?.[1];
      const [command] = await readTopic(lonelyEnv.KAFKA_BROKERS, lonelyEnv.KAFKA_TOPIC_COMMANDS, {
        keep: (r) => r.value.includes(timeoutTxn),
      });
      assert.equal(
        loggedId,
        (JSON.parse(command.value) as { correlation_id: string }).correlation_id,
        'the log names the command it failed',
      );
    } finally {
      await lonely.stop();
    }
  });

  it('writes no access token to any Kafka topic', async () => {
    const room = `!tokens-${randomUUID()}:test.local`;
    const { alice, bob } = TEST_USERS;
    assert.equal(
      (
        await sendEvent(pipeline.gateway.url, alice.token, room, 'm.room.message', `t-${randomUUID()}`, {
          msgtype: 'm.text',
          body: 'header',
        })
      ).status,
      200,
    );
    const viaQuery = await fetch(
      `${pipeline.gateway.url}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.reaction/q-${randomUUID()}?access_token=${bob.token}`,
      {
        method: 'PUT',
        body: JSON.stringify({ 'm.relates_to': { rel_type: 'm.annotation', event_id: '$target', key: 'k' } }),
      },
    );
    assert.equal(viaQuery.status, 200);
    const env = pipeline.env;
    const namespace = env.KAFKA_TOPIC_COMMANDS.replace(/\.commands$/, '');
    const admin = new Kafka({ brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(namespace));
    await admin.disconnect();
    assert.ok(topics.length >= 7, `every topic of the deployment, reply topics included: ${topics.join(', ')}`);
    const tokens = Object.values(TEST_USERS).map((user) => user.token);
    let records = 0;
    for (const topic of topics) {
      for (const record of await readTopic(env.KAFKA_BROKERS, topic)) {
        records++;
        const text = `${record.key} ${record.value} ${JSON.stringify(record.headers)}`;
        for (const token of tokens)
          assert.ok(!text.includes(token), `${topic}@${record.partition}/${record.offset} holds a token`);
      }
    }
    assert.ok(records > 10, `records were read (${records})`);
  });

  it('logs no line for a successful send', async () => {
    const before = pipeline.gateway.output.length;
    for (let i = 0; i < 5; i++) {
      const ok = await sendEvent(
        pipeline.gateway.url,
        TEST_USERS.alice.token,
        '!quiet:test.local',
        'm.room.message',
        `quiet-${randomUUID()}`,
        { msgtype: 'm.text', body: 'x' },
      );
      assert.equal(ok.status, 200);
    }
    // A failure after them is logged (debug): once its line is there, anything the successes logged would be too.
    await sendEvent(
      pipeline.gateway.url,
      TEST_USERS.alice.token,
      '!quiet:test.local',
      'm.room.message',
      'quiet-sentinel',
      '{"n": 1.5}',
    );
    const lines = (): string[] => pipeline.gateway.output.slice(before).join('').split('\n').filter(Boolean);
    await until(() => lines().some((line) => line.includes('answered 400')), 'the sentinel failure line');
    assert.deepEqual(
      lines().filter((line) => !line.includes('answered 400')),
      [],
    );
  });

  it('serves /metrics on a port of its own, on loopback unless METRICS_HOST opens it, and not on the API port', async () => {
    const outside = Object.values(networkInterfaces())
      .flat()
      .find((address) => address?.family === 'IPv4' && !address.internal)?.address;
    assert.ok(outside, 'premise: this machine has an address other than loopback');
    const gateway = await AppProcess.start('gateway', { ...pipeline.env, HTTP_HOST: '0.0.0.0', LOG_LEVEL: 'info' });
    const metricsPort = new URL(gateway.metricsUrl).port;
    try {
      const apart = await fetch(gateway.metricsUrl);
      assert.equal(apart.status, 200);
      assert.match(await apart.text(), /^# HELP matrix_gateway_requests_total/m);
      assert.match(gateway.output.join(''), new RegExp(`metrics on http://127\\.0\\.0\\.1:${metricsPort}/metrics`));
      assert.equal(
        (await fetch(`http://${outside}:${new URL(gateway.url).port}/health/live`)).status,
        200,
        'premise: the API answers on the outside address',
      );
      await assert.rejects(fetch(`http://${outside}:${metricsPort}/metrics`), 'metrics do not answer there');
      assert.equal((await fetch(`${gateway.url}/metrics`)).status, 404, 'not on the API port');
      assert.equal((await fetch(`${pipeline.consumer.url}/metrics`)).status, 404, "not on the consumer's port");
      assert.equal(
        (await fetch(gateway.metricsUrl.replace('/metrics', '/health/ready'))).status,
        404,
        'nothing else on the metrics port',
      );
    } finally {
      await gateway.stop();
    }
  });

  it('shows what the dedup state remembers, and tails the event log, with npm run events', async () => {
    const { alice } = TEST_USERS;
    const room = `!cli-${randomUUID()}:test.local`;
    const sent = await sendEvent(pipeline.gateway.url, alice.token, room, 'm.room.message', 'cli-txn', {
      msgtype: 'm.text',
      body: 'hello cli',
    });
    const env = { ...process.env, ...pipeline.env };
    const { stdout } = await run(
      process.execPath,
      [join(DIST, 'tools', 'events-cli.js'), 'txn', alice.user_id, alice.device_id, 'cli-txn'],
      { env },
    );
    assert.match(
      stdout,
      new RegExp(`${room.replace(/[$!]/g, '\\$&')}\\s+m\\.room\\.message\\s+→\\s+\\${String(sent.body.event_id)}`),
    );

    const tail = spawn(
      process.execPath,
      [join(DIST, 'tools', 'events-cli.js'), 'tail', '--room', room, '--from-start'],
      { env },
    );
    let printed = '';
    tail.stdout.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    const deadline = Date.now() + 30000;
    while (!printed.includes(String(sent.body.event_id)) && Date.now() < deadline)
      await new Promise((done) => setTimeout(done, 200));
    tail.kill('SIGINT');
    const line = JSON.parse(printed.trim().split('\n')[0]) as { event_id: string; content: unknown };
    assert.equal(line.event_id, sent.body.event_id);
    assert.deepEqual(line.content, { msgtype: 'm.text', body: 'hello cli' });
  });
});

describe('start-up', () => {
  it('stops with a non-zero exit and a line naming the variable when the config is wrong', async () => {
    for (const [name, value] of [
      ['GATEWAY_PORT', 'eighty'],
      ['KAFKA_BROKERS', 'no port'],
      ['SEND_TIMEOUT_MS', '-5'],
      ['MATRIX_HOMESERVER_URL', 'ftp://x'],
    ]) {
      const result = await run(process.execPath, [join(DIST, 'apps', 'gateway', 'src', 'main.js')], {
        env: { ...process.env, [name]: value },
      }).then(
        () => ({ code: 0, stderr: '' }),
        (error: { code: number; stderr: string }) => error,
      );
      assert.equal(result.code, 1, name);
      assert.match(result.stderr, new RegExp(`^gateway: invalid configuration: ${name}=`), name);
      assert.equal(result.stderr.trim().split('\n').length, 1, 'one line');
    }
  });

  it('stops the consumer too with a line naming the variable when its config is wrong', async () => {
    for (const [name, value] of [
      ['CONSUMER_SESSION_TIMEOUT_MS', '100'],
      ['STATE_MAX_ENTRIES', 'lots'],
      ['STATE_DIR', ' '],
      ['STATE_DIR', '/var/lib/state '],
      ['KAFKA_MAX_REQUEST_BYTES', '10'],
    ]) {
      const result = await run(process.execPath, [join(DIST, 'apps', 'consumer', 'src', 'main.js')], {
        env: { ...process.env, [name]: value },
      }).then(
        () => ({ code: 0, stderr: '' }),
        (error: { code: number; stderr: string }) => error,
      );
      assert.equal(result.code, 1, name);
      assert.match(result.stderr, new RegExp(`^consumer: invalid configuration: ${name}=`), name);
      assert.equal(result.stderr.trim().split('\n').length, 1, 'one line');
    }
  });

  it('refuses to start a consumer on co-partitioned topics of different sizes, naming them', async () => {
    const env = isolatedEnv();
    const admin = new Kafka({ brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: env.KAFKA_TOPIC_COMMANDS, numPartitions: 2 },
        { topic: env.KAFKA_TOPIC_TXNS, numPartitions: 3 },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const result = await run(process.execPath, [join(DIST, 'apps', 'consumer', 'src', 'main.js')], {
      env: { ...process.env, ...env, CONSUMER_PORT: String(await freePort()) },
      timeout: 60000,
    }).then(
      () => ({ code: 0, stdout: '' }),
      (error: { code: number; stdout: string }) => error,
    );
    assert.equal(result.code, 1);
    assert.match(result.stdout, /these topics must have the same number of partitions/);
    assert.ok(
      result.stdout.includes(`${env.KAFKA_TOPIC_COMMANDS}=2`) && result.stdout.includes(`${env.KAFKA_TOPIC_TXNS}=3`),
      result.stdout,
    );
  });

  it('exits non-zero, rather than stay live and never ready, when its consumer can never work', async () => {
    // A member of the consumer's group that speaks another assignment protocol: the broker refuses the consumer's
    // join for good (INCONSISTENT_GROUP_PROTOCOL), which kafkajs does not retry.
    const env = isolatedEnv();
    const kafka = new Kafka({ brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [{ topic: `${env.KAFKA_TOPIC_COMMANDS}.other`, numPartitions: 1 }],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const otherProtocol: PartitionAssigner = () => ({
      name: 'SomethingElse',
      version: 1,
      assign: async ({ members, topics }) =>
        members.map(({ memberId }) => ({
          memberId,
          memberAssignment: AssignerProtocol.MemberAssignment.encode({
            version: 1,
            assignment: { [topics[0]]: [0] },
            userData: Buffer.alloc(0),
          }),
        })),
      protocol: ({ topics }) => ({
        name: 'SomethingElse',
        metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }),
      }),
    });
    const squatter = kafka.consumer({ groupId: env.KAFKA_CONSUMER_GROUP, partitionAssigners: [otherProtocol] });
    await squatter.connect();
    await squatter.subscribe({ topic: `${env.KAFKA_TOPIC_COMMANDS}.other` });
    await squatter.run({ eachMessage: async () => undefined });
    try {
      const result = await run(process.execPath, [join(DIST, 'apps', 'consumer', 'src', 'main.js')], {
        env: { ...process.env, ...env, CONSUMER_PORT: String(await freePort()) },
        timeout: 90000,
      }).then(
        () => ({ code: 0, stdout: '' }),
        (error: { code: number | null; stdout: string }) => error,
      );
      assert.equal(result.code, 1, 'exit 1, for its supervisor to act on');
      assert.match(result.stdout, /stopped for good.*exiting so that a new process takes over/);
    } finally {
      await squatter.disconnect();
    }
  });

  it('creates the event log without a time limit, and warns (log and metric) about one created with a limit', async () => {
    const describeRetention = async (kafka: Kafka, topic: string) => {
      const admin = kafka.admin();
      await admin.connect();
      try {
        const { resources } = await admin.describeConfigs({
          includeSynonyms: false,
          resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
        });
        return resources[0].configEntries[0].configValue;
      } finally {
        await admin.disconnect();
      }
    };
    const fresh = isolatedEnv();
    const kafka = new Kafka({ brokers: fresh.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
    const gateway = await AppProcess.start('gateway', fresh);
    await gateway.stop();
    assert.equal(await describeRetention(kafka, fresh.KAFKA_TOPIC_EVENTS), '-1', 'kept forever');

    const handMade = isolatedEnv();
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        {
          topic: handMade.KAFKA_TOPIC_EVENTS,
          numPartitions: 4,
          configEntries: [{ name: 'retention.ms', value: '604800000' }],
        },
      ],
    });
    await admin.disconnect();
    const warned = await AppProcess.start('gateway', handMade);
    try {
      const metrics = await (await fetch(warned.metricsUrl)).text();
      assert.ok(
        metrics.includes(
          `matrix_kafka_topic_warnings{topic="${handMade.KAFKA_TOPIC_EVENTS}",problem="finite_retention"} 1`,
        ),
        'the metric',
      );
      assert.match(
        warned.output.join(''),
        /retention\.ms=604800000 where -1 is expected: events older than that are deleted/,
      );
    } finally {
      await warned.stop();
    }
  });

  it('never prints a secret setting, even when it is wrong', async () => {
    const secret = 'too-short-secret';
    const result = await run(process.execPath, [join(DIST, 'apps', 'gateway', 'src', 'main.js')], {
      env: { ...process.env, SCOPE_HASH_SECRET: secret },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^gateway: invalid configuration: SCOPE_HASH_SECRET=\(hidden\): expected at least 32 characters/,
    );
    assert.doesNotMatch(result.stderr, new RegExp(secret));
  });

  it('refuses to start a gateway without a configured scope-hash key, in one line that says why', async () => {
    const result = await runToExit('gateway', isolatedEnv({ SCOPE_HASH_SECRET: '', SCOPE_HASH_SECRET_FILE: '' }));
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^gateway: invalid configuration: SCOPE_HASH_SECRET or SCOPE_HASH_SECRET_FILE: expected one of them, .*the same for every gateway of a deployment/,
    );
    assert.equal(result.stderr.trim().split('\n').length, 1, 'one line');
  });

  it('refuses METRICS_PORT, naming the settings that replaced it', async () => {
    const result = await runToExit('consumer', isolatedEnv({ METRICS_PORT: '9100' }));
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^consumer: invalid configuration: METRICS_PORT: replaced by GATEWAY_METRICS_PORT and CONSUMER_METRICS_PORT/,
    );
  });

  it('starts a gateway on SCOPE_HASH_SECRET_FILE and says at start which key it uses', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'scope-secret-')), 'secret');
    writeFileSync(file, `${TEST_SCOPE_HASH_SECRET}\n`, { mode: 0o600 });
    const gateway = await AppProcess.start(
      'gateway',
      isolatedEnv({ SCOPE_HASH_SECRET: '', SCOPE_HASH_SECRET_FILE: file, LOG_LEVEL: 'info' }),
    );
    try {
      assert.match(gateway.output.join(''), /scope hashes keyed with SCOPE_HASH_SECRET_FILE/);
      assert.doesNotMatch(gateway.output.join(''), new RegExp(TEST_SCOPE_HASH_SECRET));
    } finally {
      await gateway.stop();
    }
  });

  it('npm start runs the pipeline with no setup: a development token and scope-hash key of its own', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...isolatedEnv(), LOG_FORMAT: 'json' };
    for (const name of ['SCOPE_HASH_SECRET', 'SCOPE_HASH_SECRET_FILE', 'MATRIX_TOKENS_FILE']) delete env[name];
    env.GATEWAY_PORT = String(await freePort());
    env.CONSUMER_PORT = String(await freePort());
    env.GATEWAY_METRICS_PORT = String(await freePort());
    env.CONSUMER_METRICS_PORT = String(await freePort());
    const dev = spawn(process.execPath, [join(DIST, 'tools', 'dev.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    dev.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    dev.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const exited = new Promise((done) => dev.once('exit', done));
    try {
      await until(
        () => output.join('').includes('Matrix send pipeline is up') || dev.exitCode !== null,
        'npm start',
        90_000,
      );
      const text = output.join('');
      assert.match(text, /scope hashes keyed with the development secret in \.cache\/scope-hash-secret/);
      const token = /token: +(\S+)/.exec(text)?.[1];
      assert.ok(token, text);
      const sent = await sendEvent(
        `http://127.0.0.1:${env.GATEWAY_PORT}`,
        token,
        '!dev:localhost',
        'm.room.message',
        randomUUID(),
        { msgtype: 'm.text', body: 'hi' },
      );
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
    } finally {
      dev.kill('SIGTERM');
      await exited;
    }
  });

  it('is live but not ready until Kafka is reachable, then ready without a restart', async () => {
    const port = await freePort();
    const env = isolatedEnv({ KAFKA_BROKERS: `127.0.0.1:${port}` });
    const [brokerHost, brokerPort] = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',')[0].split(':');
    const gatewayPort = await freePort();
    const gateway = spawn(process.execPath, [join(DIST, 'apps', 'gateway', 'src', 'main.js')], {
      env: {
        ...process.env,
        ...env,
        GATEWAY_PORT: String(gatewayPort),
        GATEWAY_METRICS_PORT: String(await freePort()),
      },
      stdio: 'ignore',
    });
    const url = `http://127.0.0.1:${gatewayPort}`;
    for (
      let i = 0;
      i < 100 &&
      !(await fetch(`${url}/health/live`).then(
        (r) => r.ok,
        () => false,
      ));
      i++
    ) {
      await new Promise((done) => setTimeout(done, 100));
    }
    let proxy: Server | undefined;
    try {
      assert.equal((await fetch(`${url}/health/live`)).status, 200);
      assert.equal((await fetch(`${url}/health/ready`)).status, 503);
      // Kafka "comes back": a proxy on the configured address forwards to the real broker.
      proxy = createServer((client) => {
        const upstream = connect(Number(brokerPort), brokerHost);
        client.pipe(upstream).pipe(client);
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
      });
      await new Promise<void>((done) => proxy!.listen(port, '127.0.0.1', done));
      const deadline = Date.now() + 30000;
      let ready = 0;
      while (Date.now() < deadline && ready !== 200) {
        ready = (await fetch(`${url}/health/ready`)).status;
        if (ready !== 200) await new Promise((done) => setTimeout(done, 250));
      }
      assert.equal(ready, 200);
    } finally {
      gateway.kill('SIGTERM');
      proxy?.close();
    }
  });
});
