import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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

  it('is started again, with back-off, while Kafka is out of reach, and given up after anything else', async () => {
    const runs: number[] = [];
    const givenUp: Error[] = [];
    let outcome: () => Promise<void> = () => Promise.reject(named('KafkaJSGroupCoordinatorNotFound'));
    const revival = new ConsumerRevival(
      quiet,
      () => (runs.push(Date.now()), outcome()),
      (error) => givenUp.push(error),
    );
    const started = Date.now();
    revival.stopped(named('KafkaJSGroupCoordinatorNotFound'));
    await new Promise((done) => setTimeout(done, 2500)); // runs after 500 ms, 1000 ms later, then 2000 ms later
    assert.equal(runs.length, 2);
    assert.ok(runs[0] - started >= 450 && runs[1] - runs[0] >= 950, 'backing off');
    assert.deepEqual(givenUp, []);
    outcome = () => Promise.reject(new TypeError('a defect'));
    for (let waited = 0; givenUp.length === 0 && waited < 5000; waited += 100)
      await new Promise((done) => setTimeout(done, 100));
    assert.equal(runs.length, 3);
    assert.equal(givenUp.length, 1, 'a defect is not Kafka out of reach');
    revival.cancel();
  });

  it('stops trying once cancelled, and starts again at the short delay once the consumer has joined its group', async () => {
    const runs: number[] = [];
    const revival = new ConsumerRevival(
      quiet,
      async () => void runs.push(Date.now()),
      () => assert.fail('given up'),
    );
    revival.stopped(named('KafkaJSConnectionError'));
    await new Promise((done) => setTimeout(done, 600));
    revival.joined();
    revival.stopped(named('KafkaJSConnectionError'));
    revival.cancel();
    await new Promise((done) => setTimeout(done, 700));
    assert.equal(runs.length, 1);
  });
});
