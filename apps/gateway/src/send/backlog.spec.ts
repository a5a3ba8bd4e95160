import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BacklogEstimate } from './backlog';

describe('the backlog estimate', () => {
  it('knows no wait before it has seen the consumers work', () => {
    const estimate = new BacklogEstimate();
    assert.equal(estimate.waitMs(0), 0);
    estimate.observe({ at: 0, committed: 0, end: 500 });
    assert.equal(estimate.backlog, 500);
    assert.equal(estimate.waitMs(0), 0, 'one sample says nothing of the rate');
  });

  it('divides the backlog by the rate at which busy consumers drained it', () => {
    const estimate = new BacklogEstimate();
    estimate.observe({ at: 0, committed: 0, end: 3000 });
    estimate.observe({ at: 1000, committed: 1000, end: 3000 }); // 1000 records/s, 2000 left
    assert.equal(estimate.drainRate, 1000);
    assert.equal(estimate.waitMs(1000), 2000);
  });

  it('does not take a quiet interval (no backlog) for the consumers’ capacity', () => {
    const estimate = new BacklogEstimate();
    estimate.observe({ at: 0, committed: 0, end: 1000 });
    estimate.observe({ at: 1000, committed: 1000, end: 1000 }); // 1000/s while busy
    estimate.observe({ at: 2000, committed: 1010, end: 1010 }); // 10 arrived, 10 done: not what they can do
    assert.equal(estimate.drainRate, 1000);
    assert.equal(estimate.waitMs(2000), 0);
  });

  it('adds the time the consumers have been stalled, so the wait grows while they stay stalled', () => {
    const estimate = new BacklogEstimate();
    estimate.observe({ at: 0, committed: 0, end: 2000 });
    estimate.observe({ at: 1000, committed: 1000, end: 2000 }); // 1000/s, 1000 left
    estimate.observe({ at: 2000, committed: 1000, end: 2000 }); // no progress: stalled since 1000
    assert.equal(estimate.waitMs(2000), 1000 + 1000);
    estimate.observe({ at: 5000, committed: 1000, end: 2000 });
    assert.equal(estimate.waitMs(5000), 4000 + 1000);
    estimate.observe({ at: 6000, committed: 1500, end: 2000 }); // working again
    assert.ok(estimate.waitMs(6000) < 1000, `${estimate.waitMs(6000)}`);
  });

  it('grows with the backlog at the same rate', () => {
    const estimate = new BacklogEstimate();
    estimate.observe({ at: 0, committed: 0, end: 1000 });
    estimate.observe({ at: 1000, committed: 500, end: 1000 });
    const before = estimate.waitMs(1000);
    estimate.observe({ at: 2000, committed: 1000, end: 3000 });
    assert.ok(estimate.waitMs(2000) > before);
  });
});
