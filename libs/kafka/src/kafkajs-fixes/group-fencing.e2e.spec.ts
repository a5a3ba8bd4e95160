import './index';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Admin, Consumer, Kafka, logLevel, Producer } from 'kafkajs';
import {
  addRequestVersion,
  ConsumerGroupMetadata,
  fetchStableOffsets,
  groupMetadataOfJoin,
  patchAdmin,
  patchBroker,
  patchConsumerGroup,
  patchProducer,
  sendOffsetsToTransaction,
} from './group-fencing';

const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');

describe('the group fencing fix for kafkajs (KIP-447 request versions)', () => {
  it('patches the installed kafkajs and refuses a source it was not written for', () => {
    for (const [patch, module] of [
      [patchBroker, 'kafkajs/src/broker'],
      [patchProducer, 'kafkajs/src/producer'],
      [patchAdmin, 'kafkajs/src/admin'],
      [patchConsumerGroup, 'kafkajs/src/consumer/consumerGroup'],
    ] as const) {
      assert.doesNotThrow(() => patch(readFileSync(require.resolve(module), 'utf8')), module);
      assert.throws(() => patch('module.exports = () => {}'), /not the version/);
    }
    const definitions = { versions: ['0', '1', '2'], protocol: () => undefined };
    assert.throws(
      () =>
        addRequestVersion(
          definitions,
          ['0', '1'],
          3,
          () => undefined,
          () => undefined,
        ),
      /not the version/,
    );
  });

  it('refuses to drop the generation when the broker only answers an older TxnOffsetCommit', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the patched request definitions
    const definitions = require('kafkajs/src/protocol/requests/txnOffsetCommit') as {
      versions: string[];
      protocol: (options: { version: number }) => (args: object) => unknown;
    };
    assert.deepEqual(definitions.versions, ['0', '1', '3']);
    const unfenced = { transactionalId: 't', groupId: 'g', producerId: 1, producerEpoch: 0, topics: [] };
    assert.ok(definitions.protocol({ version: 2 })(unfenced), 'kafkajs v1 for an unfenced commit');
    assert.throws(
      () => definitions.protocol({ version: 2 })({ ...unfenced, generationId: 4, memberId: 'm' }),
      /cannot carry the group generation/,
    );
  });

  describe('against the broker', () => {
    const ns = `fence-${randomUUID().slice(0, 8)}`;
    const topic = `${ns}.input`;
    const groupId = `${ns}.group`;
    const kafka = new Kafka({ brokers, logLevel: logLevel.NOTHING, clientId: 'group-fencing-test' });
    let admin: Admin;
    let consumer: Consumer;
    let producer: Producer;
    let joined: ConsumerGroupMetadata;

    before(async () => {
      admin = kafka.admin();
      await admin.connect();
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
      consumer = kafka.consumer({ groupId, sessionTimeout: 10_000 });
      const join = new Promise<ConsumerGroupMetadata>((resolve) =>
        consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => resolve(groupMetadataOfJoin(payload))),
      );
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({ autoCommit: false, eachBatch: async () => undefined });
      joined = await join;
      producer = kafka.producer({ transactionalId: `${ns}.producer`, idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
    });
    after(async () => {
      await producer?.disconnect();
      await consumer?.disconnect();
      await admin?.disconnect();
    });

    const commitOffset = async (offset: number, metadata: ConsumerGroupMetadata): Promise<void> => {
      const tx = await producer.transaction();
      try {
        await sendOffsetsToTransaction(
          tx,
          groupId,
          [{ topic, partitions: [{ partition: 0, offset: String(offset) }] }],
          metadata,
        );
        await tx.commit();
      } catch (error) {
        await tx.abort();
        throw error;
      }
    };

    it("says the consumer's generation and member id when it joins", () => {
      assert.ok(joined.generationId >= 1, `generation ${joined.generationId}`);
      assert.ok(joined.memberId.length > 0);
    });

    it('commits the offsets of the current member and generation', async () => {
      await commitOffset(5, joined);
      assert.equal((await fetchStableOffsets(admin, groupId, topic, 5000)).get(0), 5n);
    });

    it('refuses the offsets of a stale generation or an unknown member, and they do not move', async () => {
      await assert.rejects(
        commitOffset(9, { ...joined, generationId: joined.generationId - 1 }),
        (error: Error & { type?: string }) => error.type === 'ILLEGAL_GENERATION',
      );
      await assert.rejects(
        commitOffset(9, { ...joined, memberId: `${joined.memberId}-zombie` }),
        (error: Error & { type?: string }) => error.type === 'UNKNOWN_MEMBER_ID',
      );
      assert.equal((await fetchStableOffsets(admin, groupId, topic, 5000)).get(0), 5n);
    });

    it('answers a require_stable read only once the transaction holding an offset commit has ended', async () => {
      const tx = await producer.transaction();
      await sendOffsetsToTransaction(tx, groupId, [{ topic, partitions: [{ partition: 0, offset: '7' }] }], joined);
      // Premise: an unstable read sees the old offset while the commit is pending.
      const [unstable] = await admin.fetchOffsets({ groupId, topics: [topic] });
      assert.equal(unstable.partitions[0].offset, '5');
      await assert.rejects(fetchStableOffsets(admin, groupId, topic, 0), (error: Error & { type?: string }) => {
        return error.type === 'UNSTABLE_OFFSET_COMMIT';
      });
      const stable = fetchStableOffsets(admin, groupId, topic, 10_000);
      setTimeout(() => void tx.commit(), 300);
      assert.equal((await stable).get(0), 7n);
    });
  });
});
