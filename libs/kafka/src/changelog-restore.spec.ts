import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecordMetadata, TopicMessages } from 'kafkajs';
import { changelogCheckpoint, changelogFingerprint } from './changelog-restore';

const meta = (topicName: string, partition: number, baseOffset: string): RecordMetadata => ({
  topicName,
  partition,
  baseOffset,
  errorCode: 0,
});

describe('the checkpoint a committed batch brings its store to', () => {
  it("is the first changelog record of the last request that carried the partition's changelog", () => {
    const requests: TopicMessages[][] = [
      [{ topic: 'txns', messages: [{ key: 'a', value: '1', partition: 2 }] }],
      [
        { topic: 'events', messages: [{ key: 'room', value: 'e', partition: 0 }] },
        {
          topic: 'txns',
          messages: [
            { key: 'other partition', value: 'x', partition: 3 },
            { key: 'b', value: '2', partition: 2 },
            { key: 'c', value: null, partition: 2 },
          ],
        },
      ],
      [{ topic: 'events', messages: [{ key: 'room', value: 'f', partition: 0 }] }],
    ];
    const written = [
      [meta('txns', 2, '40')],
      [meta('events', 0, '7'), meta('txns', 3, '9'), meta('txns', 2, '41')],
      [meta('events', 0, '8')],
    ];
    assert.deepEqual(changelogCheckpoint(requests, written, 'txns', 2), {
      offset: '41',
      fingerprint: changelogFingerprint('b', '2'),
    });
    assert.equal(changelogCheckpoint(requests, written, 'txns', 5), undefined, 'nothing written to partition 5');
  });

  it('fingerprints a record the same whether it was sent as text or read back as bytes, and tells records apart', () => {
    assert.equal(changelogFingerprint('k', '{"a":1}'), changelogFingerprint(Buffer.from('k'), Buffer.from('{"a":1}')));
    assert.equal(changelogFingerprint('k', null), changelogFingerprint(Buffer.from('k'), null));
    assert.notEqual(changelogFingerprint('k', null), changelogFingerprint('k', ''));
    assert.notEqual(changelogFingerprint('ab', 'c'), changelogFingerprint('a', 'bc'));
  });
});
