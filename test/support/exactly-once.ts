import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readEventLog, readEventLogJava, readTopicJava } from './event-log';
import { Transaction, TransactionOutcome } from './load';
import { TEST_USERS } from './pipeline';

const users = [TEST_USERS.alice, TEST_USERS.bob, TEST_USERS.alicePhone];

/** `count` transactions over three senders and 20 rooms; every tenth is sent twice on purpose. */
export function transactions(prefix: string, count: number): Transaction[] {
  return Array.from({ length: count }, (_, i) => ({
    token: users[i % users.length].token,
    roomId: `!${prefix}-${i % 20}:test.local`,
    txnId: `${prefix}-${i}`,
    sends: i % 10 === 0 ? 2 : 1,
  }));
}

const javaAvailable = spawnSync('java', ['-version']).status === 0;

/**
 * Every transaction ended with one event_id, and the event log holds exactly the answered events, once each. The log
 * is read as the Java client reads it (read_committed up to the last stable offsets), the reference; kafkajs' reading
 * is compared with it, and a difference is reported (kafkajs is what the consumer restores its state with).
 */
export async function assertExactlyOnce(env: Record<string, string>, outcomes: TransactionOutcome[]): Promise<void> {
  assert.ok(outcomes.length > 0, 'there were transactions to check');
  assert.deepEqual(outcomes.flatMap((o) => o.failures).slice(0, 5), [], 'every transaction ended with 200');
  for (const o of outcomes) {
    assert.ok(o.eventIds.length >= o.transaction.sends, `${o.transaction.txnId}: an answer for every send`);
    assert.equal(new Set(o.eventIds).size, 1, `${o.transaction.txnId}: one event_id for every answer`);
  }
  const answered = new Set(outcomes.map((o) => o.eventIds[0]));
  const kafkajs = await readEventLog(env.KAFKA_BROKERS, env.KAFKA_TOPIC_EVENTS, { timeoutMs: 120000 });
  const log = javaAvailable ? await readEventLogJava(env.KAFKA_BROKERS, env.KAFKA_TOPIC_EVENTS) : kafkajs;
  const logged = log.map((e) => e.event.event_id);
  const viaKafkajs = kafkajs.map((e) => e.event.event_id);
  if (viaKafkajs.length !== logged.length || viaKafkajs.some((id) => !logged.includes(id))) {
    process.stdout.write(
      `# the kafkajs reader disagrees with the Java client: ${viaKafkajs.length} events against ${logged.length}\n`,
    );
  }
  if (new Set(logged).size !== logged.length) {
    const copies = new Map<string, string[]>();
    for (const e of log)
      copies.set(e.event.event_id, [...(copies.get(e.event.event_id) ?? []), `${e.partition}@${e.offset}`]);
    const doubled = [...copies].filter(([, at]) => at.length > 1).slice(0, 10);
    process.stdout.write(
      `# doubled events (event_id: copies): ${doubled.map(([id, at]) => `${id}: ${at.join(', ')}`).join(' | ')}\n`,
    );
  }
  assert.equal(new Set(logged).size, logged.length, 'no event twice in the log');
  const inLog = new Set(logged);
  const lost = outcomes.filter((o) => !inLog.has(o.eventIds[0]));
  if (lost.length > 0) {
    const shown = lost
      .slice(0, 10)
      .map(
        (o) => `${o.transaction.txnId} ${o.eventIds[0]} after ${o.retryable.length} retries [${o.retryable.join(',')}]`,
      );
    process.stdout.write(`# answered 200 but not in the log: ${shown.join(' | ')}\n`);
    if (javaAvailable) {
      // Half a transaction or none of it: is the dedup changelog record of the same transaction there?
      const remembered = (await readTopicJava(env.KAFKA_BROKERS, env.KAFKA_TOPIC_TXNS)).filter(({ value }) =>
        lost.some((o) => value.includes(o.eventIds[0])),
      );
      process.stdout.write(
        `# their dedup changelog records: ${remembered.length} of ${lost.length} ${remembered.map((r) => `${r.partition}@${r.offset}`).join(' ')}\n`,
      );
    }
  }
  assert.deepEqual(new Set(logged), answered, 'the log holds exactly the answered events');
}
