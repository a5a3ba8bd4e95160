import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Logger } from '@nestjs/common';
import { Message, Producer, ProducerConfig, ProducerRecord, RecordMetadata } from 'kafkajs';
import { BatchingProducer, BatchingProducerOptions, ProducerSource, TopicGoneError } from './batching-producer';
import { recordBytes } from './record-bytes';

Logger.overrideLogger(false); // the replacements and gone topics these tests cause are logged as warnings

/** One produce request a fake producer was given, answered by the test. */
interface Request {
  producer: FakeProducer;
  topic: string;
  acks?: number;
  values: string[];
  bytes: number;
  answered: boolean;
  succeed(): void;
  fail(error: Error): void;
}

/** A kafkajs producer that connects at once (or refuses, as its source says) and keeps each request until told. */
class FakeProducer implements Pick<Producer, 'connect' | 'send' | 'disconnect'> {
  connected = false;
  disconnected = false;

  constructor(
    private readonly source: FakeKafka,
    readonly config: ProducerConfig,
  ) {}

  async connect(): Promise<void> {
    if (this.source.refuseConnect) throw this.source.refuseConnect;
    this.connected = true;
  }

  send(record: ProducerRecord): Promise<RecordMetadata[]> {
    // As kafkajs: a producer that is not connected, or no longer, refuses at once.
    if (!this.connected || this.disconnected) return Promise.reject(new Error('The producer is disconnected'));
    return new Promise((resolve, reject) => {
      const request: Request = {
        producer: this,
        topic: record.topic,
        acks: record.acks,
        values: record.messages.map((message) => String(message.value)),
        bytes: record.messages.reduce((sum, message) => sum + recordBytes(message), 0),
        answered: false,
        succeed: () => ((request.answered = true), resolve([])),
        fail: (error) => ((request.answered = true), reject(error)),
      };
      this.source.requests.push(request);
    });
  }

  async disconnect(): Promise<void> {
    this.disconnected = true;
    this.source.events.push(`disconnect ${this.source.producers.indexOf(this)}`);
  }
}

class FakeKafka implements ProducerSource {
  readonly producers: FakeProducer[] = [];
  readonly requests: Request[] = [];
  /** What happened, in order, where the order is the point. */
  readonly events: string[] = [];
  /** While set, producers fail to connect with it. */
  refuseConnect?: Error;

  producer(config: ProducerConfig): FakeProducer {
    const producer = new FakeProducer(this, config);
    this.producers.push(producer);
    return producer;
  }

  unanswered(topic?: string): Request[] {
    return this.requests.filter((request) => !request.answered && (topic === undefined || request.topic === topic));
  }
}

/** A send's promise, watched: its outcome can be asserted while it may still be pending. */
function watch(promise: Promise<void>): { state: 'pending' | 'sent' | 'failed'; error?: unknown } {
  const watched: { state: 'pending' | 'sent' | 'failed'; error?: unknown } = { state: 'pending' };
  promise.then(
    () => (watched.state = 'sent'),
    (error: unknown) => Object.assign(watched, { state: 'failed', error }),
  );
  return watched;
}

/** Lets every promise continuation that is due run (setImmediate is not mocked). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Errors as kafkajs gives them: the broker's error type, nested in the retry error that gave up. */
function brokerError(type: string): Error {
  const cause = Object.assign(new Error(`the broker answered ${type}`), { name: 'KafkaJSProtocolError', type });
  return Object.assign(new Error(`retries exceeded: ${cause.message}`), {
    name: 'KafkaJSNumberOfRetriesExceeded',
    originalError: cause,
  });
}
const timeoutError = (): Error =>
  Object.assign(new Error('Request Produce(key: 0, version: 7) timed out'), { name: 'KafkaJSRequestTimeoutError' });

const LINGER_MS = 5;
const message = (value: string): Message => ({ key: 'k', value });

describe('the batching producer', () => {
  let kafka: FakeKafka;
  let producer: BatchingProducer;
  let replaced: number;
  const start = (options: Partial<BatchingProducerOptions> = {}): BatchingProducer => {
    kafka = new FakeKafka();
    replaced = 0;
    producer = new BatchingProducer(kafka, {
      name: 'test',
      lingerMs: LINGER_MS,
      maxBatch: 100,
      maxBatchBytes: 1_000_000,
      replaced: () => replaced++,
      ...options,
    });
    return producer;
  };
  const send = (topic: string, value: string) => watch(producer.send(topic, message(value)));

  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 0 });
    mock.method(performance, 'now', () => Date.now());
  });
  afterEach(async () => {
    // Answers whatever a test left on its way, including what disconnect itself sends.
    let stopped = false;
    const stopping = producer.disconnect().then(() => (stopped = true));
    for (let rounds = 0; !stopped && rounds < 20; rounds++) {
      kafka.unanswered().forEach((request) => request.succeed());
      await settle();
    }
    await stopping;
    mock.timers.reset();
    mock.restoreAll();
  });

  it('asks kafkajs for what keeps each partition in order across retries: idempotence, acks=all, at most 5 requests in flight', async () => {
    start();
    send('t', 'a');
    mock.timers.tick(LINGER_MS);
    await settle();
    assert.equal(kafka.producers.length, 1);
    const { config } = kafka.producers[0];
    assert.equal(config.idempotent, true);
    assert.ok(config.maxInFlightRequests! <= 5, 'more than 5 in flight reorders an idempotent producer’s retries');
    assert.equal(config.allowAutoTopicCreation, false);
    assert.equal(kafka.requests[0].acks, -1);
  });

  it('sends a lone send after the linger, counted from the first send that waits, not from the last', async () => {
    start();
    const a = send('t', 'a');
    mock.timers.tick(LINGER_MS - 2);
    const b = send('t', 'b');
    mock.timers.tick(1);
    await settle();
    assert.equal(kafka.requests.length, 0, 'the premise: nothing before the linger');
    mock.timers.tick(1);
    await settle();
    assert.deepEqual(
      kafka.requests.map((request) => request.values),
      [['a', 'b']],
    );
    kafka.requests[0].succeed();
    await settle();
    assert.deepEqual([a.state, b.state], ['sent', 'sent']);
  });

  it('gathers the sends that arrive while a request is in flight into the next request, in the order they were sent', async () => {
    start();
    const a = send('t', 'a');
    mock.timers.tick(LINGER_MS);
    await settle();
    const later = ['b', 'c', 'd'].map((value) => send('t', value));
    mock.timers.tick(60_000);
    await settle();
    assert.equal(kafka.requests.length, 1, 'they wait for the request in flight, not for a timer');
    kafka.requests[0].succeed();
    await settle();
    assert.equal(a.state, 'sent');
    assert.deepEqual(
      later.map((send) => send.state),
      ['pending', 'pending', 'pending'],
    );
    assert.deepEqual(
      kafka.requests.map((request) => request.values),
      [['a'], ['b', 'c', 'd']],
    );
    kafka.requests[1].succeed();
    await settle();
    assert.deepEqual(
      later.map((send) => send.state),
      ['sent', 'sent', 'sent'],
    );
    assert.equal(kafka.producers.length, 1);
  });

  it('holds every request to the record and byte bounds, sends a full batch at once even while another is in flight, and keeps the order of sends across requests', async () => {
    const maxBatch = 4;
    const maxBatchBytes = 400;
    start({ maxBatch, maxBatchBytes });
    // Values of assorted sizes, one of them over the byte bound on its own (32 bytes of framing each).
    const sizes = [10, 10, 10, 10, 10, 10, 200, 150, 120, 500, 10, 300, 90, 10, 10, 10, 10, 10, 10];
    const sends = sizes.map((size, i) => send('t', `${i}:`.padEnd(size, 'x')));
    await settle();
    assert.ok(kafka.requests.length >= 2, 'the premise: full batches left without waiting for the linger');
    assert.ok(
      kafka.requests.length >= 2 && kafka.unanswered().length >= 2,
      'the premise: a full batch went while another request was in flight',
    );
    for (let rounds = 0; sends.some((send) => send.state === 'pending') && rounds < 50; rounds++) {
      kafka.unanswered().forEach((request) => request.succeed());
      mock.timers.tick(LINGER_MS);
      await settle();
    }
    assert.ok(
      sends.every((send) => send.state === 'sent'),
      'every send was sent',
    );
    for (const { values, bytes } of kafka.requests) {
      assert.ok(values.length <= maxBatch, `${values.length} records in one request`);
      assert.ok(bytes <= maxBatchBytes || values.length === 1, `${bytes} bytes in a request of ${values.length}`);
    }
    assert.ok(
      kafka.requests.some(({ values, bytes }) => values.length === 1 && bytes > maxBatchBytes),
      'the premise: a record over the byte bound went alone',
    );
    assert.deepEqual(
      kafka.requests.flatMap(({ values }) => values.map((value) => Number(value.split(':')[0]))),
      sizes.map((_, i) => i),
    );
  });

  it('fails exactly the sends of a failed request, with its error, and keeps a producer that is not broken', async () => {
    start({ maxBatch: 2 });
    const first = [send('t', 'a'), send('t', 'b')];
    const second = [send('t', 'c'), send('t', 'd')];
    await settle();
    assert.equal(kafka.requests.length, 2, 'the premise: two requests in flight at once');
    const error = timeoutError();
    kafka.requests[0].fail(error);
    await settle();
    assert.deepEqual(
      first.map((send) => [send.state, send.error]),
      [
        ['failed', error],
        ['failed', error],
      ],
    );
    assert.deepEqual(
      second.map((send) => send.state),
      ['pending', 'pending'],
    );
    kafka.requests[1].succeed();
    const next = send('t', 'e');
    mock.timers.tick(LINGER_MS);
    await settle();
    kafka.requests[2].succeed();
    await settle();
    assert.deepEqual(
      [...second, next].map((send) => send.state),
      ['sent', 'sent', 'sent'],
    );
    assert.equal(kafka.producers.length, 1, 'a timeout leaves the producer usable');
    assert.equal(replaced, 0);
  });

  it('replaces a producer left broken (its sequence numbers out of step): the sends behind the failed request go on a new one', async () => {
    start();
    const a = send('t', 'a');
    mock.timers.tick(LINGER_MS);
    await settle();
    const b = send('t', 'b');
    const error = brokerError('OUT_OF_ORDER_SEQUENCE_NUMBER');
    kafka.requests[0].fail(error);
    await settle();
    assert.equal(a.error, error);
    assert.equal(b.state, 'pending', 'a send queued behind the failed request is not failed with it');
    assert.equal(replaced, 1);
    assert.equal(kafka.producers.length, 2);
    assert.equal(kafka.producers[0].disconnected, true, 'the broken producer is closed');
    assert.deepEqual(kafka.unanswered()[0].values, ['b']);
    assert.equal(kafka.unanswered()[0].producer, kafka.producers[1]);
    kafka.unanswered()[0].succeed();
    await settle();
    assert.equal(b.state, 'sent');
  });

  it('replaces a broken producer once, however many of its requests fail', async () => {
    start({ maxBatch: 1 });
    const sends = ['a', 'b', 'c'].map((value) => send('t', value));
    await settle();
    assert.equal(kafka.unanswered().length, 3, 'the premise: three requests on one producer at once');
    kafka.unanswered().forEach((request) => request.fail(brokerError('OUT_OF_ORDER_SEQUENCE_NUMBER')));
    await settle();
    assert.deepEqual(
      sends.map((send) => send.state),
      ['failed', 'failed', 'failed'],
    );
    assert.equal(replaced, 1);
    const next = send('t', 'd');
    await settle();
    assert.deepEqual([kafka.producers.length, kafka.unanswered()[0].producer], [2, kafka.producers[1]]);
    kafka.unanswered()[0].succeed();
    await settle();
    assert.equal(next.state, 'sent');
  });

  it('fails the sends waiting for a producer that cannot connect, and connects anew for the next send', async () => {
    start();
    kafka.refuseConnect = Object.assign(new Error('Connection refused'), { name: 'KafkaJSConnectionError' });
    await assert.rejects(producer.connect('t'), /Connection refused/);
    const a = send('t', 'a');
    mock.timers.tick(LINGER_MS);
    await settle();
    assert.equal(a.error, kafka.refuseConnect);
    assert.ok(kafka.producers.length >= 2, 'the failed connect did not stay cached');
    assert.ok(
      kafka.producers.every((p) => p.disconnected),
      'a producer that failed to connect is closed',
    );
    kafka.refuseConnect = undefined;
    const b = send('t', 'b');
    mock.timers.tick(LINGER_MS);
    await settle();
    kafka.unanswered()[0].succeed();
    await settle();
    assert.equal(b.state, 'sent');
  });

  it('gives each topic its own lane: a topic whose request hangs delays no other topic', async () => {
    start();
    const stuck = send('stuck', 'a');
    const queued = send('stuck', 'b');
    mock.timers.tick(LINGER_MS);
    await settle();
    const other = send('other', 'c');
    mock.timers.tick(LINGER_MS);
    await settle();
    const request = kafka.unanswered('other')[0];
    assert.notEqual(request.producer, kafka.unanswered('stuck')[0].producer, 'a producer of its own');
    request.succeed();
    await settle();
    assert.equal(other.state, 'sent');
    assert.deepEqual([stuck.state, queued.state], ['pending', 'pending']);
  });

  it('with goneTopicMs, fails everything for a topic the broker says is gone, then fails its sends at once for that long, without asking', async () => {
    const goneTopicMs = 60_000;
    start({ goneTopicMs });
    const inRequest = send('gone', 'a');
    const other = send('other', 'c');
    mock.timers.tick(LINGER_MS);
    await settle();
    const queued = send('gone', 'b');
    const error = brokerError('UNKNOWN_TOPIC_OR_PARTITION');
    kafka.unanswered('gone')[0].fail(error);
    await settle();
    assert.deepEqual(
      [inRequest.error, queued.error],
      [error, error],
      'the queued send fails now, not after a request of its own',
    );
    assert.equal(kafka.producers[0].disconnected, true, 'kafkajs would keep asking for the topic’s metadata');
    const producersBefore = kafka.producers.length;
    const requestsBefore = kafka.requests.length;
    mock.timers.tick(goneTopicMs - 1);
    const atOnce = send('gone', 'd');
    await settle();
    assert.ok(atOnce.error instanceof TopicGoneError);
    assert.equal(atOnce.error.type, 'UNKNOWN_TOPIC_OR_PARTITION');
    assert.deepEqual([kafka.producers.length, kafka.requests.length], [producersBefore, requestsBefore]);
    kafka.unanswered('other')[0].succeed();
    await settle();
    assert.equal(other.state, 'sent', 'another topic is not affected');
    assert.equal(replaced, 0);
    mock.timers.tick(1);
    const again = send('gone', 'e');
    mock.timers.tick(LINGER_MS);
    await settle();
    assert.deepEqual(kafka.unanswered('gone')[0]?.values, ['e'], 'asked again once goneTopicMs is over');
    kafka.unanswered('gone')[0].succeed();
    await settle();
    assert.equal(again.state, 'sent');
  });

  it('without goneTopicMs, fails only the request’s sends for a missing topic and asks again with a new producer', async () => {
    start();
    const a = send('t', 'a');
    mock.timers.tick(LINGER_MS);
    await settle();
    const b = send('t', 'b');
    kafka.requests[0].fail(brokerError('UNKNOWN_TOPIC_OR_PARTITION'));
    await settle();
    assert.deepEqual([a.state, b.state], ['failed', 'pending']);
    assert.equal(replaced, 1, 'kafkajs would keep refreshing a deleted topic’s metadata');
    assert.equal(kafka.unanswered()[0].producer, kafka.producers[1]);
    kafka.unanswered()[0].succeed();
    await settle();
    assert.equal(b.state, 'sent');
  });

  it('on disconnect, sends everything queued, disconnects no producer before its requests are answered, and refuses later sends', async () => {
    start({ maxBatch: 2 });
    const inFlight = send('t', 'a');
    send('x', 'x');
    mock.timers.tick(LINGER_MS);
    await settle();
    const queued = [send('t', 'b'), send('t', 'c'), send('t', 'd')];
    await settle();
    assert.equal(kafka.requests.length, 3, 'the premise: a full batch went, one send still waits');
    const stopped = producer.disconnect();
    let disconnected = false;
    void stopped.then(() => (disconnected = true));
    const late = send('t', 'e');
    await settle();
    assert.ok(late.error instanceof Error && /stopped/.test(late.error.message), 'a send after disconnect fails');
    assert.deepEqual(kafka.unanswered('t').at(-1)?.values, ['d'], 'what waited went out at once');
    assert.deepEqual(kafka.events, [], 'no producer closed under requests on their way');
    kafka.unanswered().forEach((request) => request.succeed());
    await settle();
    assert.equal(disconnected, true);
    assert.deepEqual(
      [inFlight, ...queued].map((send) => send.state),
      ['sent', 'sent', 'sent', 'sent'],
    );
    assert.deepEqual(kafka.events.toSorted(), ['disconnect 0', 'disconnect 1']);
  });

  it('closes the producer of a topic unused for 5 minutes, never one with sends queued or in flight', async () => {
    start();
    send('idle', 'a');
    send('busy', 'b');
    mock.timers.tick(LINGER_MS);
    await settle();
    const idle = kafka.unanswered('idle')[0].producer;
    const busy = kafka.unanswered('busy')[0].producer;
    kafka.unanswered('idle')[0].succeed();
    for (let minute = 0; minute < 6; minute++) {
      mock.timers.tick(60_000);
      await settle();
    }
    assert.equal(idle.disconnected, true);
    assert.equal(busy.disconnected, false, 'its request is still on its way');
    const again = send('idle', 'c');
    mock.timers.tick(LINGER_MS);
    await settle();
    assert.equal(
      kafka.unanswered('idle')[0].producer,
      kafka.producers[2],
      'a new producer when the topic is used again',
    );
    kafka.unanswered('idle')[0].succeed();
    await settle();
    assert.equal(again.state, 'sent');
  });
});
