import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertPatchedKafkajsVersion, filterAbortedMessages, PATCHED_KAFKAJS_VERSION } from './read-committed';

const record = (offset: number, producerId: string, inTransaction = true) => ({
  offset: String(offset),
  key: Buffer.from('k'),
  batchContext: { producerId, inTransaction },
});
const abortMarker = (offset: number, producerId: string) => ({
  offset: String(offset),
  key: Buffer.from([0, 0, 0, 0]),
  isControlRecord: true,
  batchContext: { producerId, inTransaction: true },
});

describe('read_committed filtering of aborted transactions', () => {
  it('drops every aborted record even when the broker lists aborted transactions by marker, not by start', () => {
    // Producer A's transaction (offsets 1-2) was aborted after producer B's (3), which ended first.
    const messages = [
      record(0, 'C'),
      record(1, 'A'),
      record(2, 'A'),
      record(3, 'B'),
      abortMarker(4, 'B'),
      record(5, 'C'),
      abortMarker(6, 'A'),
      record(7, 'A'),
    ];
    const kept = filterAbortedMessages({
      messages,
      abortedTransactions: [
        { producerId: 'B', firstOffset: '3' },
        { producerId: 'A', firstOffset: '1' },
      ],
    });
    assert.deepEqual(
      kept.filter((m) => !('isControlRecord' in m)).map((m) => m.offset),
      ['0', '5', '7'],
    );
  });

  it('is what kafkajs uses once @app/kafka is loaded', async () => {
    const specifier: string = 'kafkajs/src/consumer/filterAbortedMessages';
    const kafkajsFilter = (await import(specifier)) as { default: unknown };
    assert.equal(kafkajsFilter.default, filterAbortedMessages);
  });

  it('refuses to load over a kafkajs release it was not written for', () => {
    assert.doesNotThrow(() => assertPatchedKafkajsVersion(PATCHED_KAFKAJS_VERSION));
    assert.throws(() => assertPatchedKafkajsVersion('2.2.5'), /kafkajs 2\.2\.5 is installed/);
  });
});
