/**
 * `npm run events -- <command>`: look into the pipeline's Kafka topics.
 *
 *   tail [--room ROOM] [--from-start]        print accepted events as they arrive (or from the start)
 *   txn <user_id> <device_id> <txnId>        what the dedup state remembers of that device's transaction
 *
 * Uses the same configuration (KAFKA_BROKERS, TLS and SASL, topic names) as the apps. Ctrl-C stops tail.
 */
/* eslint-disable no-console -- a terminal program */
import '@app/kafka'; // before kafkajs: patches its read_committed filter
import { randomUUID } from 'node:crypto';
import { Kafka, Partitioners } from 'kafkajs';
import { kafkaConnection, loadConfig, loadScopeHashSecret } from '@app/config';
import { commandKey, RoomEvent, TxnChangelogRecord } from '@app/contracts';
import { scopeHash } from '@app/matrix';
import { createKafka, silenceKafkajsTimerWarnings } from '@app/kafka';
import { escapeControlCharacters } from '@app/observability';

const usage = `usage: npm run events -- tail [--room ROOM] [--from-start]
       npm run events -- txn <user_id> <device_id> <txnId>`;

async function tail(kafka: Kafka, topic: string, room: string | undefined, fromStart: boolean): Promise<void> {
  const consumer = kafka.consumer({
    groupId: `events-cli-${randomUUID()}`,
    readUncommitted: false,
    maxWaitTimeInMs: 500,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: fromStart });
  const stop = (): void => void consumer.disconnect().then(() => process.exit(0));
  process.on('SIGINT', stop).on('SIGTERM', stop);
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message, partition }) => {
      const event = JSON.parse(message.value?.toString() ?? '{}') as RoomEvent;
      if (room && event.room_id !== room) return;
      // Room IDs, types and content may hold control characters: none reaches the terminal raw.
      console.log(escapeControlCharacters(JSON.stringify({ partition, offset: message.offset, ...event }), 'json'));
    },
  });
}

/** Reads the txns partition the transaction's key maps to, up to its end, and prints the matching records. */
async function txn(
  kafka: Kafka,
  topics: { commands: string; txns: string },
  secret: Buffer,
  userId: string,
  deviceId: string,
  txnId: string,
): Promise<void> {
  const hash = scopeHash({ userId, deviceId }, secret);
  const admin = kafka.admin();
  await admin.connect();
  const [metadata] = (await admin.fetchTopicMetadata({ topics: [topics.commands] })).topics;
  const partition = Partitioners.DefaultPartitioner()({
    topic: topics.commands,
    partitionMetadata: metadata.partitions,
    message: { key: commandKey(hash, txnId), value: null },
  });
  const end = (await admin.fetchTopicOffsets(topics.txns)).find((p) => p.partition === partition)!;
  await admin.disconnect();
  console.log(`scope hash ${hash}; ${topics.txns} partition ${partition} (records ${end.low}..${end.high})`);
  if (end.high === end.low) return console.log('nothing remembered in this partition');
  const consumer = kafka.consumer({
    groupId: `events-cli-${randomUUID()}`,
    readUncommitted: false,
    maxWaitTimeInMs: 500,
  });
  await consumer.connect();
  await consumer.subscribe({ topic: topics.txns, fromBeginning: true });
  let found = 0;
  // The log ends in transaction markers, which no batch shows: stop once the partition has gone quiet.
  await new Promise<void>((done) => {
    let idle = setTimeout(done, 10000);
    void consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        if (batch.partition !== partition) return;
        clearTimeout(idle);
        idle = setTimeout(done, 1500);
        for (const message of batch.messages) {
          const record = parseRecord(message.value);
          if (record?.scope_hash === hash && record.txn_id === txnId) {
            found++;
            const outcome =
              record.event_id ??
              (record.forwarded
                ? `forwarded to the annotation stage (${record.forwarded})`
                : JSON.stringify(record.error));
            console.log(
              escapeControlCharacters(
                `${new Date(record.ts).toISOString()}  ${record.room_id}  ${record.type}  →  ${outcome}`,
              ),
            );
          }
        }
      },
    });
  });
  await consumer.disconnect();
  if (found === 0) console.log('no transaction with that txnId is remembered for this device');
}

/** A changelog record, or null for anything else in the topic (restore markers, tombstones). */
function parseRecord(value: Buffer | null): TxnChangelogRecord | null {
  try {
    const parsed = JSON.parse(value?.toString() ?? 'null') as TxnChangelogRecord | null;
    return parsed && typeof parsed === 'object' ? parsed : null;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  silenceKafkajsTimerWarnings();
  const [command, ...args] = process.argv.slice(2);
  const config = loadConfig();
  const kafka = createKafka(kafkaConnection(config), 'events-cli');
  const option = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  if (command === 'tail') return tail(kafka, config.KAFKA_TOPIC_EVENTS, option('room'), args.includes('--from-start'));
  if (command === 'txn' && args.length >= 3) {
    return txn(
      kafka,
      { commands: config.KAFKA_TOPIC_COMMANDS, txns: config.KAFKA_TOPIC_TXNS },
      loadScopeHashSecret(config).key,
      args[0],
      args[1],
      args[2],
    );
  }
  console.error(usage);
  process.exit(2);
}

main().catch((error: unknown) => {
  console.error(`events: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
