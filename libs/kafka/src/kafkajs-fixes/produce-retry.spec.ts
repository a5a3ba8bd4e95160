import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { patchSendMessages } from './produce-retry';

describe('the produce retry fix for kafkajs', () => {
  it('makes a retry wait for every request of the attempt, in the installed kafkajs', () => {
    const source = readFileSync(require.resolve('kafkajs/src/producer/sendMessages'), 'utf8');
    const patched = patchSendMessages(source);
    assert.ok(!patched.includes('await Promise.all(requests)'));
    assert.ok(patched.includes('await settleAll(requests)'));
  });

  it("is the sendMessages that kafkajs' producer uses", () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loads kafkajs after the fix, as @app/kafka does
    require('kafkajs');
    const loaded = require.cache[require.resolve('kafkajs/src/producer/sendMessages')]?.exports as
      (() => unknown) | undefined;
    assert.match(String(loaded), /settleAll\(requests\)/);
  });

  it('adds every partition of a transactional send to the transaction in one request, before producing', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loads kafkajs after the fix, as @app/kafka does
    require('kafkajs');
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the patched module kafkajs' producer uses
    const createSendMessages = require('kafkajs/src/producer/sendMessages') as (
      deps: unknown,
    ) => (send: {
      acks: number;
      topicMessages: { topic: string; messages: { value: string; partition: number }[] }[];
    }) => Promise<unknown[]>;
    const log: string[] = [];
    const leaderOf = (partition: number) => partition % 3; // three brokers, each leading some partitions
    const brokers = [0, 1, 2].map((nodeId) => ({
      nodeId,
      produce: async ({ topicData }: { topicData: { topic: string; partitions: { partition: string }[] }[] }) => {
        log.push(`produce ${nodeId}`);
        return {
          topics: topicData.map(({ topic, partitions }) => ({
            topicName: topic,
            partitions: partitions.map(({ partition }) => ({
              partition: Number(partition),
              errorCode: 0,
              baseOffset: '0',
            })),
          })),
        };
      },
    }));
    const partitionMetadata = [0, 1, 2, 3, 4, 5].map((partitionId) => ({ partitionId, leader: leaderOf(partitionId) }));
    const cluster = {
      refreshMetadataIfNecessary: async () => undefined,
      addMultipleTargetTopics: async () => undefined,
      findTopicPartitionMetadata: () => partitionMetadata,
      findLeaderForPartitions: (_topic: string, partitions: string[]) => {
        const byLeader: Record<number, string[]> = {};
        for (const partition of partitions) (byLeader[leaderOf(Number(partition))] ??= []).push(partition);
        return byLeader;
      },
      findBroker: async ({ nodeId }: { nodeId: number }) => brokers[Number(nodeId)],
      isConnected: () => true,
    };
    const added = new Set<string>();
    const eosManager = {
      isTransactional: () => true,
      acquireBrokerLock: async () => undefined,
      releaseBrokerLock: async () => undefined,
      getSequence: () => 0,
      updateSequence: () => undefined,
      getTransactionalId: () => 'tx',
      getProducerId: () => 1,
      getProducerEpoch: () => 0,
      addPartitionsToTransaction: async (topicData: { topic: string; partitions: { partition: string }[] }[]) => {
        const fresh = topicData.flatMap(({ topic, partitions }) =>
          partitions.map(({ partition }) => `${topic}:${Number(partition)}`).filter((key) => !added.has(key)),
        );
        if (fresh.length === 0) return;
        fresh.forEach((key) => added.add(key));
        log.push(`add ${fresh.sort().join(',')}`);
      },
    };
    const sendMessages = createSendMessages({
      logger: { debug: () => undefined, error: () => undefined },
      cluster,
      partitioner: ({ message }: { message: { partition: number } }) => message.partition,
      eosManager,
      retrier: (attempt: (bail: (e: Error) => void, count: number, time: number) => Promise<unknown>) =>
        attempt(
          (error) => {
            throw error;
          },
          0,
          0,
        ),
    });
    const written = await sendMessages({
      acks: -1,
      topicMessages: [
        { topic: 'events', messages: [0, 1, 2, 3, 4, 5].map((partition) => ({ value: 'x', partition })) },
        { topic: 'replies', messages: [{ value: 'y', partition: 1 }] },
      ],
    });
    assert.equal(written.length, 7, 'every partition written');
    assert.deepEqual(log.slice(0, 1), ['add events:0,events:1,events:2,events:3,events:4,events:5,replies:1']);
    assert.deepEqual(log.slice(1).sort(), ['produce 0', 'produce 1', 'produce 2'], 'then one request per leader');
  });

  it('refuses a source it was not written for', () => {
    assert.throws(() => patchSendMessages('module.exports = () => {}'), /not the version/);
  });
});
