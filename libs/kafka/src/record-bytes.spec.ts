import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chunkByBytes, recordBytes } from './record-bytes';

describe('splitting output by bytes', () => {
  const message = (i: number, size = 100) => ({ key: `k${i}`, value: 'v'.repeat(size), headers: { h: 'x' } });

  it('counts key, value and headers, and never less than the payload', () => {
    assert.ok(recordBytes(message(1, 1000)) >= 1000 + 2 + 2);
    assert.ok(recordBytes({ value: Buffer.alloc(5000) }) >= 5000);
  });

  it('keeps every request under the bound, every record once, and each topic in order', () => {
    const output = [
      { topic: 'events', messages: Array.from({ length: 50 }, (_, i) => message(i, 60_000)) },
      { topic: 'txns', messages: Array.from({ length: 50 }, (_, i) => message(i, 50)) },
    ];
    const chunks = chunkByBytes(output, 900_000);
    assert.ok(chunks.length >= 4);
    for (const chunk of chunks) {
      const bytes = chunk.flatMap((t) => t.messages).reduce((sum, m) => sum + recordBytes(m), 0);
      assert.ok(bytes <= 900_000, `a request of ${bytes} bytes`);
    }
    for (const topic of ['events', 'txns']) {
      const keys = chunks.flatMap((chunk) =>
        chunk.filter((t) => t.topic === topic).flatMap((t) => t.messages.map((m) => m.key)),
      );
      assert.deepEqual(
        keys,
        Array.from({ length: 50 }, (_, i) => `k${i}`),
      );
    }
  });

  it('sends a record larger than the bound alone rather than never', () => {
    const chunks = chunkByBytes([{ topic: 't', messages: [message(1, 10), message(2, 2000), message(3, 10)] }], 1000);
    assert.deepEqual(
      chunks.map((chunk) => chunk[0].messages.map((m) => m.key)),
      [['k1'], ['k2'], ['k3']],
    );
  });
});
