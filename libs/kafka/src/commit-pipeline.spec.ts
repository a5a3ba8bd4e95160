import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecordMetadata, TopicMessages } from 'kafkajs';
import { changelogCheckpoint, changelogFingerprint } from './changelog-restore';
import { CommitEntry, CommitPipeline, Round, roundOffsets } from './commit-pipeline';
import { chunkByBytes } from './record-bytes';

const member = { generationId: 3, memberId: 'm' };
const entry = (partition: number, offset: number): CommitEntry => ({
  topic: 't',
  partition,
  records: [{ topic: 'out', messages: [{ value: `${partition}@${offset}` }] }],
  offset: BigInt(offset),
});

/** A commit that the test ends by hand, recording every round it was given. */
function manualCommits() {
  const rounds: Round[] = [];
  const ends: { resolve: () => void; reject: (error: Error) => void }[] = [];
  const commit = (round: Round): Promise<void> =>
    new Promise((resolve, reject) => {
      rounds.push(round);
      ends.push({ resolve, reject });
    });
  return { rounds, ends, commit };
}
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('the commit pipeline (one transaction per round, exactly-once v2)', () => {
  it('puts the batches decided together into one transaction', async () => {
    const { rounds, ends, commit } = manualCommits();
    const pipeline = new CommitPipeline(commit);
    const done = [
      pipeline.add(member, entry(0, 5)),
      pipeline.add(member, entry(1, 9)),
      pipeline.add(member, entry(2, 1)),
    ];
    await turn();
    assert.equal(rounds.length, 1);
    assert.deepEqual(
      rounds[0].entries.map((e) => e.partition),
      [0, 1, 2],
    );
    ends[0].resolve();
    await Promise.all(done);
  });

  it("gives every batch of a round what the round wrote, in which each finds its own partition's changelog checkpoint", async () => {
    const changelog = (partition: number, keys: string[]): CommitEntry => ({
      topic: 't',
      partition,
      records: [
        { topic: 'events', messages: [{ value: `event of ${partition}`, partition: 0 }] },
        { topic: 'txns', messages: keys.map((key) => ({ key, value: `${partition}`, partition })) },
      ],
      offset: 1n,
    });
    // As the record collector does: the round's records in requests of at most 120 bytes, each answered with the
    // base offset of every topic-partition it carried (partition p's changelog starting at offset 100 * p).
    const next = new Map<string, number>();
    const pipeline = new CommitPipeline(async (round: Round) => {
      const requests = chunkByBytes(
        round.entries.flatMap(({ records }) => records),
        120,
      );
      const written = requests.map((request: TopicMessages[]) =>
        request.flatMap(({ topic, messages }) =>
          [...new Set(messages.map((m) => m.partition!))].map((partition): RecordMetadata => {
            const key = `${topic}/${partition}`;
            const baseOffset = next.get(key) ?? (topic === 'txns' ? 100 * partition : 0);
            next.set(key, baseOffset + messages.filter((m) => m.partition === partition).length);
            return { topicName: topic, partition, baseOffset: String(baseOffset), errorCode: 0 };
          }),
        ),
      );
      return { requests, written };
    });
    const batches = [changelog(1, ['a', 'b', 'c', 'd']), changelog(2, ['e']), changelog(3, [])];
    const results = await Promise.all(batches.map((batch) => pipeline.add(member, batch)));
    assert.ok(results[0].requests.length > 1, 'the premise: the round needed several requests');
    assert.ok(
      results.every((result) => result === results[0]),
      'the premise: one round',
    );
    const checkpoints = batches.map(({ partition }, i) =>
      changelogCheckpoint(results[i].requests, results[i].written, 'txns', partition),
    );
    // Partition 1's changelog went out in two requests (a, b; then c, d): its store reaches the first of the last.
    assert.deepEqual(checkpoints[0], { offset: '102', fingerprint: changelogFingerprint('c', '1') });
    assert.deepEqual(checkpoints[1], { offset: '200', fingerprint: changelogFingerprint('e', '2') });
    assert.equal(checkpoints[2], undefined, 'a batch that wrote no changelog record moves no checkpoint');
  });

  it('with one producer, commits one round at a time, and gathers everything decided meanwhile into the next', async () => {
    const { rounds, ends, commit } = manualCommits();
    const pipeline = new CommitPipeline(commit);
    const first = pipeline.add(member, entry(0, 1));
    await turn();
    const later = [pipeline.add(member, entry(1, 1)), pipeline.add(member, entry(2, 1))];
    await turn();
    assert.equal(rounds.length, 1, 'the next round waits for the running commit');
    let laterSettled = false;
    void Promise.all(later).then(() => (laterSettled = true));
    ends[0].resolve();
    await first;
    await turn();
    await turn();
    assert.equal(rounds.length, 2);
    assert.deepEqual(
      rounds[1].entries.map((e) => e.partition),
      [1, 2],
    );
    assert.equal(laterSettled, false, 'a batch settles only with its own round');
    ends[1].resolve();
    await Promise.all(later);
    assert.equal(pipeline.pending, 0);
  });

  it('fails every batch of a round that did not commit, and goes on with the next round', async () => {
    const { rounds, ends, commit } = manualCommits();
    const pipeline = new CommitPipeline(commit);
    const failed = [pipeline.add(member, entry(0, 1)), pipeline.add(member, entry(1, 1))];
    await turn();
    const next = pipeline.add(member, entry(2, 1));
    ends[0].reject(new Error('ILLEGAL_GENERATION'));
    for (const batch of failed) await assert.rejects(batch, /ILLEGAL_GENERATION/);
    await turn();
    await turn();
    assert.equal(rounds.length, 2);
    ends[1].resolve();
    await next;
  });

  it('never mixes batches decided under different group generations in one transaction', async () => {
    const { rounds, ends, commit } = manualCommits();
    const pipeline = new CommitPipeline(commit);
    const done = [
      pipeline.add(member, entry(0, 1)),
      pipeline.add({ ...member, generationId: 4 }, entry(1, 1)),
      pipeline.add({ ...member, generationId: 4 }, entry(2, 1)),
    ];
    await turn();
    ends[0].resolve();
    await done[0];
    await turn();
    await turn();
    assert.deepEqual(
      rounds.map((r) => [r.metadata.generationId, r.entries.length]),
      [
        [3, 1],
        [4, 2],
      ],
    );
    ends[1].resolve();
    await Promise.all(done);
  });

  it('commits for each partition the offset after its last batch in the round', () => {
    assert.deepEqual(roundOffsets([entry(0, 5), entry(1, 2), entry(0, 9)]), [
      {
        topic: 't',
        partitions: [
          { partition: 0, offset: '9' },
          { partition: 1, offset: '2' },
        ],
      },
    ]);
  });

  it('with one round at a time on two producers, alternates them', async () => {
    const slots: number[] = [];
    const pipeline = new CommitPipeline(async (_round, slot) => void slots.push(slot), 2, 1);
    await pipeline.add(member, entry(0, 1));
    await pipeline.add(member, entry(0, 2));
    await pipeline.add(member, entry(0, 3));
    assert.deepEqual(slots, [0, 1, 0]);
  });

  it('commits up to one round per producer at once, each on a producer of its own, the one idle longest first', async () => {
    const { rounds, ends, commit } = manualCommits();
    const slots: number[] = [];
    const pipeline = new CommitPipeline((round, slot) => (slots.push(slot), commit(round)), 2);
    const first = pipeline.add(member, entry(0, 1));
    await turn();
    const second = pipeline.add(member, entry(1, 1));
    await turn();
    const third = pipeline.add(member, entry(2, 1));
    await turn();
    assert.equal(rounds.length, 2, 'two producers: two rounds commit at once, the third waits');
    assert.deepEqual(slots, [0, 1]);
    ends[1].resolve();
    await second;
    await turn();
    await turn();
    assert.deepEqual(slots, [0, 1, 1], 'the producer that became free');
    ends[0].resolve();
    ends[2].resolve();
    await Promise.all([first, third]);
    const fourth = pipeline.add(member, entry(0, 2));
    await turn();
    assert.deepEqual(slots, [0, 1, 1, 0], 'the producer idle longest');
    ends[3].resolve();
    await fourth;
    await pipeline.drained();
    assert.equal(pipeline.pending, 0);
  });
});
