import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Logger } from '@nestjs/common';
import { EachBatchPayload, KafkaMessage } from 'kafkajs';
import { CommitEntry } from './commit-pipeline';
import type { PartitionHandler } from './processor-api';
import { ConsumerRewind, StreamTask, TaskContext } from './stream-task';
import type { RoundWritten } from './streams-producer';

const member = { generationId: 3, memberId: 'm' };
const turns = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** A batch of partition 0 as kafkajs hands it out, fetched from `fetchedOffset` (its first offset by default). */
function fetched(offsets: number[], fetchedOffset = offsets[0]) {
  const resolved: string[] = [];
  const messages = offsets.map((offset) => ({ offset: String(offset), key: null, value: null }) as KafkaMessage);
  const batch = {
    topic: 'in',
    partition: 0,
    messages,
    fetchedOffset: String(fetchedOffset),
    firstOffset: () => String(offsets[0]),
    lastOffset: () => String(offsets.at(-1)),
    offsetLag: () => '0',
  };
  const payload = {
    batch,
    resolveOffset: (offset: string) => void resolved.push(offset),
    heartbeat: async () => undefined,
  } as unknown as EachBatchPayload;
  return { payload, batch: payload.batch, resolved };
}

/**
 * A task of partition 0 started at offset 10, whose rounds the test commits or fails by hand; the fake producer
 * leaves out of its round a batch whose partition was released meanwhile, as StreamsProducer does.
 */
function taskOf(decidesOnUncommitted: boolean, storeRefuses = new Set<number>()) {
  const decided: number[][] = [];
  const outcomes: string[] = [];
  const seeks: string[] = [];
  const releases: number[] = [];
  const rounds: { entry: CommitEntry; commit: () => void; fail: (error: Error) => void }[] = [];
  let owned = true;
  const handler: PartitionHandler<object> = {
    decidesOnUncommitted,
    createState: () => ({}),
    restore: () => undefined,
    processBatch: (_state, { messages }) => {
      const first = Number(messages[0].offset);
      decided.push(messages.map(({ offset }) => Number(offset)));
      return {
        records: [],
        afterCommit: () => {
          if (storeRefuses.has(first)) throw new Error('injected: the store refuses the batch');
          outcomes.push(`committed ${first}`);
        },
        aborted: () => void outcomes.push(`aborted ${first}`),
      };
    },
  };
  const logger = new Logger('stream-task-test');
  logger.warn = () => undefined;
  logger.error = () => undefined;
  const rewind = new ConsumerRewind({ seek: ({ offset }) => void seeks.push(offset) }, logger);
  const context: TaskContext<object> = {
    logger,
    handler,
    changelogTopic: 'changelog',
    producer: {
      add: (_membership, entry) =>
        new Promise<RoundWritten>((resolve, reject) =>
          rounds.push({
            entry,
            commit: () =>
              resolve({ requests: [], written: [], included: new Set(entry.current?.() === false ? [] : [entry]) }),
            fail: reject,
          }),
        ),
    },
    rewind,
    membership: () => member,
    stopped: () => false,
    release: (partition) => {
      owned = false;
      releases.push(partition);
    },
  };
  const task = new StreamTask({}, context);
  task.startAt(10n);
  const process = (payload: EachBatchPayload): Promise<void> =>
    task.process(
      payload,
      () => owned,
      async () => undefined,
    );
  return { process, decided, outcomes, seeks, releases, rounds, rewind };
}

describe("a partition's stream task", () => {
  it('decides the next batch while the previous one commits, with at most two batches uncommitted', async () => {
    const { process, decided, outcomes, rounds } = taskOf(true);
    const first = fetched([10, 11]);
    const second = fetched([12]);
    await process(first.payload);
    await process(second.payload);
    assert.deepEqual(decided, [[10, 11], [12]]);
    assert.deepEqual([first.resolved, second.resolved], [['11'], ['12']], 'the consumer fetches on meanwhile');
    assert.deepEqual(outcomes, []);
    const third = process(fetched([13]).payload);
    await turns();
    assert.equal(decided.length, 2, 'a third batch waits for one of the two to commit');
    rounds[0].commit();
    await third;
    assert.deepEqual(decided, [[10, 11], [12], [13]]);
    assert.deepEqual(outcomes, ['committed 10']);
    rounds[1].commit();
    rounds[2].commit();
    await turns();
    assert.deepEqual(outcomes, ['committed 10', 'committed 12', 'committed 13']);
  });

  it('when a batch does not commit, aborts the later one too and reads again from the last committed offset', async () => {
    const { process, decided, outcomes, seeks, releases, rounds, rewind } = taskOf(true);
    await process(fetched([10, 11]).payload);
    rounds[0].commit();
    await turns();
    await process(fetched([12, 13]).payload);
    await process(fetched([14]).payload);
    assert.deepEqual(decided, [[10, 11], [12, 13], [14]]);
    rounds[1].fail(new Error('injected: this commit fails'));
    await turns();
    rounds[2].commit(); // its round began after the partition was released: the batch is left out of it
    await turns();
    assert.deepEqual(outcomes, ['committed 10', 'aborted 12', 'aborted 14']);
    assert.deepEqual(seeks, ['12'], 'the consumer reads again after the last batch that committed');
    assert.deepEqual(releases, [0], 'the partition is released once, to be taken over again');
    assert.equal(rewind.fetchedBefore(fetched([15], 15).batch), true, 'a batch fetched before the seek is skipped');
    assert.equal(rewind.fetchedBefore(fetched([12], 12).batch), false);
    assert.equal(rewind.fetchedBefore(fetched([15], 15).batch), false, 'once read again, nothing more is skipped');
  });

  it('when the store cannot take a committed batch, reads again from after it: the later batch does not commit', async () => {
    const { process, outcomes, seeks, releases, rounds } = taskOf(true, new Set([10]));
    await process(fetched([10, 11]).payload);
    await process(fetched([12]).payload);
    rounds[0].commit();
    await turns();
    rounds[1].commit(); // its round began after the partition was released: the batch is left out of it
    await turns();
    assert.deepEqual(outcomes, ['aborted 12']);
    assert.deepEqual(seeks, ['12'], 'batch 10-11 committed (the restore replays it); 12 is read again');
    assert.deepEqual(releases, [0]);
  });

  it('does not decide again the records of a batch fetched again', async () => {
    const { process, decided, rounds } = taskOf(true);
    await process(fetched([10, 11]).payload);
    const again = fetched([10, 11, 12]);
    await process(again.payload);
    assert.deepEqual(decided, [[10, 11], [12]]);
    assert.deepEqual(again.resolved, ['12']);
    rounds.forEach((round) => round.commit());
    await turns();
    const already = fetched([11, 12]);
    await process(already.payload);
    assert.deepEqual(already.resolved, ['12'], 'nothing new: its offset is resolved at once');
    assert.equal(rounds.length, 2);
  });

  it('without deciding on uncommitted batches, resolves a batch only once it committed, and never one that did not', async () => {
    const { process, decided, outcomes, seeks, releases, rounds } = taskOf(false);
    const first = fetched([10, 11]);
    const done = process(first.payload);
    await turns();
    assert.deepEqual(first.resolved, [], 'not before its transaction committed');
    rounds[0].commit();
    await done;
    assert.deepEqual(first.resolved, ['11']);
    const second = fetched([12]);
    const failed = process(second.payload);
    await turns();
    rounds[1].fail(new Error('injected: this commit fails'));
    await failed;
    assert.deepEqual(second.resolved, [], 'kafkajs fetches the batch again');
    assert.deepEqual(decided, [[10, 11], [12]]);
    assert.deepEqual(outcomes, ['committed 10', 'aborted 12']);
    assert.deepEqual(releases, [0]);
    assert.deepEqual(seeks, [], 'the consumer is not sent back: it has not fetched past the batch');
  });
});
