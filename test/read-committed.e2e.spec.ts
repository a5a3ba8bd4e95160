import '@app/kafka'; // before kafkajs: patches its read_committed filter
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { Kafka, logLevel, Transaction } from 'kafkajs';
import { readTopic } from './support/event-log';

const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');

describe("read_committed through the project's kafkajs (patched), on a real broker", () => {
  it('never returns the records of a transaction aborted across another one that committed', async () => {
    const kafka = new Kafka({ brokers, logLevel: logLevel.NOTHING, clientId: 'read-committed-test' });
    const topic = `read-committed-${randomUUID()}`;
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = (id: string) =>
      kafka.producer({ transactionalId: `${topic}.${id}`, idempotent: true, maxInFlightRequests: 1 });
    const [committing, first, second] = [
      producer('committing'),
      producer('aborting-first'),
      producer('aborting-second'),
    ];
    await Promise.all([committing, first, second].map((p) => p.connect()));
    const send = (tx: Transaction, value: string) => tx.send({ topic, messages: [{ value }] });
    const committed = async (value: string) => {
      const tx = await committing.transaction();
      await send(tx, value);
      await tx.commit();
    };

    // Interleaved on one partition: A opens before B, B aborts before A. The broker lists aborted transactions
    // by their abort markers (B, then A), which kafkajs' own filter read as if ordered by their first offsets.
    await committed('before');
    const a = await first.transaction();
    await send(a, 'aborted-a1');
    const b = await second.transaction();
    await send(b, 'aborted-b1');
    await b.abort();
    await committed('committed-1');
    await send(a, 'aborted-a2');
    await a.abort();
    await committed('after');
    await Promise.all([committing, first, second].map((p) => p.disconnect()));

    const values = (await readTopic(brokers.join(','), topic)).map((record) => record.value);
    assert.deepEqual(values, ['before', 'committed-1', 'after']);
  });
});
