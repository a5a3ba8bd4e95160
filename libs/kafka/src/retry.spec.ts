import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Logger } from '@nestjs/common';
import { ConsumerRevival, isKafkaUnreachable } from './retry';

const named = (name: string, message = name): Error => Object.assign(new Error(message), { name });
const quiet = new Logger('test');
quiet.warn = () => undefined;

describe('a consumer that kafkajs stopped for good', () => {
  it('counts a missing group coordinator and lost connections as Kafka out of reach, also as the cause of another error', () => {
    assert.equal(
      isKafkaUnreachable(named('KafkaJSGroupCoordinatorNotFound', 'Failed to find group coordinator')),
      true,
    );
    assert.equal(
      isKafkaUnreachable(Object.assign(named('KafkaJSNonRetriableError'), { cause: named('KafkaJSConnectionError') })),
      true,
    );
    assert.equal(isKafkaUnreachable(new TypeError('a defect in the stage')), false);
  });

  /** Advances the mocked clock by `ms`, letting the promise continuations each timer starts run. */
  async function advance(ms: number): Promise<void> {
    mock.timers.tick(ms);
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  }
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  it('is started again, with back-off, while Kafka is out of reach, and given up after anything else', async () => {
    const runs: number[] = [];
    const givenUp: Error[] = [];
    let outcome: () => Promise<void> = () => Promise.reject(named('KafkaJSGroupCoordinatorNotFound'));
    const revival = new ConsumerRevival(
      quiet,
      () => (runs.push(Date.now()), outcome()),
      (error) => givenUp.push(error),
    );
    revival.stopped(named('KafkaJSGroupCoordinatorNotFound'));
    await advance(499);
    assert.deepEqual(runs, []);
    await advance(1);
    await advance(999);
    assert.deepEqual(runs, [500]);
    await advance(1);
    assert.deepEqual(runs, [500, 1500], 'backing off: 500 ms, then 1000 ms');
    assert.deepEqual(givenUp, []);
    outcome = () => Promise.reject(new TypeError('a defect'));
    await advance(2000);
    assert.deepEqual(runs, [500, 1500, 3500]);
    assert.equal(givenUp.length, 1, 'a defect is not Kafka out of reach');
    await advance(60_000);
    assert.equal(runs.length, 3, 'nothing after giving up');
    revival.cancel();
  });

  it('starts again at the short delay once the consumer has joined its group, and stops trying once cancelled', async () => {
    const runs: number[] = [];
    const revival = new ConsumerRevival(
      quiet,
      async () => void runs.push(Date.now()),
      () => assert.fail('given up'),
    );
    revival.stopped(named('KafkaJSConnectionError'));
    await advance(500);
    revival.joined();
    revival.stopped(named('KafkaJSConnectionError'));
    await advance(500);
    assert.deepEqual(runs, [500, 1000], 'joined: the next stop waits 500 ms again, not 1000');
    revival.stopped(named('KafkaJSConnectionError'));
    revival.cancel();
    await advance(60_000);
    assert.equal(runs.length, 2);
  });
});
