import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBuckets } from './token-buckets';

describe('per-sender token buckets', () => {
  it('allows a burst, then one send per 1/rate seconds, and says how long to wait', () => {
    let now = 0;
    const buckets = new TokenBuckets(2, 3, 100, () => now);
    assert.deepEqual([buckets.take('a'), buckets.take('a'), buckets.take('a')], [0, 0, 0]);
    assert.equal(buckets.take('a'), 500);
    assert.equal(buckets.take('b'), 0, 'senders have buckets of their own');
    now = 500;
    assert.equal(buckets.take('a'), 0);
    assert.equal(buckets.take('a'), 500);
  });

  it('keeps at most maxKeys buckets', () => {
    let now = 0;
    const buckets = new TokenBuckets(1, 1, 2, () => now);
    buckets.take('a');
    buckets.take('b');
    buckets.take('c'); // drops a, the longest untouched
    assert.equal(buckets.take('a'), 0, 'a starts afresh');
    assert.equal(buckets.take('c'), 1000);
    now = 1;
  });
  it('refills on time when the wall clock is stepped back an hour (durations come from a monotonic clock)', async () => {
    const wallClock = Date.now;
    let step = 0;
    Date.now = () => wallClock() + step;
    try {
      const buckets = new TokenBuckets(20, 1);
      assert.equal(buckets.take('a'), 0);
      assert.ok(buckets.take('a') > 0, 'the premise: the bucket is empty');
      step = -3_600_000; // NTP steps the clock back
      await new Promise((done) => setTimeout(done, 150));
      assert.equal(buckets.take('a'), 0, 'one token back after 1/20 s, not in an hour');
    } finally {
      Date.now = wallClock;
    }
  });
});
