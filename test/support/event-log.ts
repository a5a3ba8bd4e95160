import { randomUUID } from 'node:crypto';
import { IHeaders, Kafka, logLevel } from 'kafkajs';
import { RoomEvent } from '@app/contracts';

export interface LoggedEvent {
  event: RoomEvent;
  headers: Record<string, string>;
  partition: number;
}

const text = (headers: IHeaders | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k, String(v)]));

/**
 * Reads a topic from the start as a downstream reader would (read_committed) until `expected` records arrived
 * and the log has been quiet for `settleMs`, so a test also sees records that should not be there.
 */
export async function readEventLog(brokers: string, topic: string, expected: number, settleMs = 1500, timeoutMs = 60000): Promise<LoggedEvent[]> {
  const kafka = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING, clientId: 'test-reader' });
  const consumer = kafka.consumer({ groupId: `test-reader-${randomUUID()}`, readUncommitted: false, maxWaitTimeInMs: 200 });
  const events: LoggedEvent[] = [];
  let lastArrival = Date.now();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message, partition }) => {
      events.push({ event: JSON.parse(message.value!.toString()) as RoomEvent, headers: text(message.headers), partition });
      lastArrival = Date.now();
    },
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && (events.length < expected || Date.now() - lastArrival < settleMs)) {
    await new Promise((done) => setTimeout(done, 100));
  }
  await consumer.disconnect();
  return events;
}
