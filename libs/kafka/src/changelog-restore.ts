import { createHash, randomUUID } from 'node:crypto';
import { Kafka, KafkaMessage, Message, Producer, RecordMetadata, TopicMessages } from 'kafkajs';

/**
 * Longest the restore applies records without yielding, ms: a fetched batch (thousands of records) would otherwise
 * hold the event loop, and with it the batches of partitions already owned, for as long as it takes to apply.
 */
const RESTORE_SLICE_MS = 20;

/** Key of the record that a partition's new owner writes to learn where the changelog ends. */
export const RESTORE_MARKER_KEY = '__restore_marker__';

/**
 * Where a local state store stands in its changelog partition: it holds the record at `offset` and everything before
 * it. The fingerprint (of that record's key and value) tells this changelog from another incarnation of a topic of
 * the same name: kafkajs 2.2.4 cannot read topic IDs (Metadata v10+), and offsets start again at 0 in a new topic.
 */
export interface Checkpoint {
  offset: string;
  fingerprint: string;
}

/** A partition's state kept on disk between owners: what a restore needs to replay only the changelog's tail. */
export interface LocalState {
  /** Where the store stands; undefined when it has nothing (new, or emptied). */
  checkpoint(): Checkpoint | undefined;
  /** Empties the store and forgets its checkpoint, before a full restore. */
  clear(): void;
  /**
   * The restore reached `checkpoint` (the owner's marker): the store holds everything up to it, once the promise (if
   * any) resolves; a rejection fails the take-over.
   */
  restored(checkpoint: Checkpoint): void | Promise<void>;
}

export interface RestoreTarget {
  partition: number;
  /** Receives each changelog record of the partition, in log order, up to the marker. */
  apply: (message: KafkaMessage) => void;
  /** The partition's local store, if it keeps one: the restore then starts from its checkpoint when it can. */
  local?: LocalState;
}

/** The marker a new owner wrote, and so where its restore ends. */
export interface RestoreMarker {
  nonce: string;
  /** The marker record's own position: the checkpoint of a store restored up to it. */
  checkpoint: Checkpoint;
}

export interface PartitionRestore {
  partition: number;
  /** `partial`: replayed from the local store's checkpoint; `full`: from the changelog's start. */
  kind: 'full' | 'partial';
  /** Why, for the logs: what made a full restore necessary, or where a partial one started. */
  reason: string;
  records: number;
}

export interface RestoreStats {
  records: number;
  millis: number;
  partitions: PartitionRestore[];
}

export function changelogFingerprint(key: Buffer | string | null, value: Buffer | string | null): string {
  const hash = createHash('sha256');
  hash.update(key === null ? '\u0000null' : key);
  hash.update('\u0000');
  hash.update(value === null ? '\u0000null' : value);
  return hash.digest('base64url').slice(0, 22);
}

/**
 * The checkpoint a committed transaction brings a partition's store to: the first changelog record of the last
 * produce request that carried some (`requests[i]` answered by `written[i]`). Records of that request after it are
 * replayed again after a crash, which is harmless (a replay applies records in log order). Undefined when the
 * transaction wrote nothing to the changelog partition.
 */
export function changelogCheckpoint(
  requests: TopicMessages[][],
  written: RecordMetadata[][],
  topic: string,
  partition: number,
): Checkpoint | undefined {
  for (let i = requests.length - 1; i >= 0; i--) {
    const first = requests[i]
      .filter((topicMessages) => topicMessages.topic === topic)
      .flatMap((topicMessages) => topicMessages.messages)
      .find((message: Message) => message.partition === partition);
    const offset = written[i]?.find((m) => m.topicName === topic && m.partition === partition)?.baseOffset;
    if (first && offset !== undefined) {
      return { offset, fingerprint: changelogFingerprint(first.key ?? null, first.value ?? null) };
    }
  }
  return undefined;
}

/**
 * Writes an end marker into a changelog partition through its owner's transactional producer. Called after the
 * producer was initialised, which fenced any previous owner and aborted its open transaction, so every record before
 * the marker is final.
 */
export async function writeRestoreMarker(producer: Producer, topic: string, partition: number): Promise<RestoreMarker> {
  const nonce = randomUUID();
  const tx = await producer.transaction();
  let offset: string | undefined;
  try {
    const written = await tx.send({
      topic,
      acks: -1,
      messages: [{ key: RESTORE_MARKER_KEY, value: nonce, partition }],
    });
    offset = written.find((m) => m.partition === partition)?.baseOffset;
    await tx.commit();
  } catch (error) {
    await tx.abort().catch(() => undefined);
    throw error;
  }
  if (offset === undefined) throw new Error(`no offset for the restore marker of ${topic}/${partition}`);
  return { nonce, checkpoint: { offset, fingerprint: changelogFingerprint(RESTORE_MARKER_KEY, nonce) } };
}

interface Plan {
  target: RestoreTarget;
  marker: RestoreMarker;
  kind: 'full' | 'partial';
  reason: string;
  /** A partial restore's checkpoint: the first record read must be the one it names. */
  from?: Checkpoint;
  records: number;
}

/**
 * Writes an end marker into each of the given changelog partitions in one idempotent, non-transactional send, and
 * returns each partition's marker (nonce, and its own position as the checkpoint of a store restored up to it). A
 * read_committed reader only reaches a marker once every transaction that began before it has ended, so every record
 * before a marker is final when the restore reads it.
 */
export async function writeRestoreMarkers(
  producer: Producer,
  topic: string,
  partitions: number[],
): Promise<Map<number, RestoreMarker>> {
  const nonces = new Map(partitions.map((partition) => [partition, randomUUID()]));
  const written = await producer.send({
    topic,
    acks: -1,
    messages: [...nonces].map(([partition, nonce]) => ({ key: RESTORE_MARKER_KEY, value: nonce, partition })),
  });
  // One record per partition: each partition's base offset is its marker's offset.
  return new Map(
    [...nonces].map(([partition, nonce]) => {
      const offset = written.find((m) => m.topicName === topic && m.partition === partition)?.baseOffset;
      if (offset === undefined) throw new Error(`no offset for the restore marker of ${topic}/${partition}`);
      return [
        partition,
        { nonce, checkpoint: { offset, fingerprint: changelogFingerprint(RESTORE_MARKER_KEY, nonce) } },
      ];
    }),
  );
}

/**
 * Restores the given partitions of a changelog up to each one's marker (read_committed): reading up to our own
 * marker, rather than to a high watermark, is exact even with transaction control records and aborted transactions in
 * the log. A partition whose local store has a checkpoint replays from it; a full restore (from the log start, the
 * store emptied first) happens when the store has none, when the checkpoint is below the log start offset or beyond
 * the marker, or when the record at the checkpoint is not the one the store saw (a topic deleted and created again).
 * Each partition's outcome (kind, reason, records) is in the stats.
 */
export async function restoreChangelog(
  kafka: Kafka,
  topic: string,
  targets: RestoreTarget[],
  markers: Map<number, RestoreMarker>,
  keepAlive: () => Promise<void> = async () => undefined,
): Promise<RestoreStats> {
  const started = performance.now();
  const logStart = await logStartOffsets(kafka, topic);
  const plans = targets.map((target): Plan => {
    const marker = markers.get(target.partition)!;
    const checkpoint = target.local?.checkpoint();
    const start = logStart.get(target.partition) ?? 0n;
    const full = (reason: string): Plan => {
      target.local?.clear();
      return { target, marker, kind: 'full', reason, records: 0 };
    };
    if (!target.local) return { target, marker, kind: 'full', reason: 'no local store', records: 0 };
    if (checkpoint === undefined) return full('no local state');
    if (BigInt(checkpoint.offset) < start)
      return full(`checkpoint ${checkpoint.offset} below the log start offset ${start}`);
    if (BigInt(checkpoint.offset) > BigInt(marker.checkpoint.offset))
      return full(`checkpoint ${checkpoint.offset} beyond the changelog's end ${marker.checkpoint.offset}`);
    return {
      target,
      marker,
      kind: 'partial',
      reason: `from checkpoint ${checkpoint.offset}`,
      from: checkpoint,
      records: 0,
    };
  });
  const mismatched = await replay(kafka, topic, plans, keepAlive);
  // A store of another incarnation of the topic: emptied, then restored from the start.
  const again = mismatched.map((plan): Plan => {
    plan.target.local?.clear();
    const reason = `the record at checkpoint ${plan.from!.offset} is not the one the store saw (topic recreated?)`;
    return { ...plan, kind: 'full', reason, from: undefined, records: 0 };
  });
  if (again.length > 0) await replay(kafka, topic, again, keepAlive);
  const outcomes = new Map([...plans, ...again].map((plan) => [plan.target.partition, plan]));
  await Promise.all(
    [...outcomes.values()].map(async (plan) => {
      await plan.target.local?.restored(plan.marker.checkpoint);
    }),
  );
  const partitions = [...outcomes.values()].map(({ target, kind, reason, records }) => ({
    partition: target.partition,
    kind,
    reason,
    records,
  }));
  return {
    records: partitions.reduce((sum, p) => sum + p.records, 0),
    millis: Math.round(performance.now() - started),
    partitions,
  };
}

async function logStartOffsets(kafka: Kafka, topic: string): Promise<Map<number, bigint>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.low)]));
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Reads each plan's partition from its checkpoint (or the start) to its marker; returns the plans whose checkpoint
 * record did not match.
 */
async function replay(kafka: Kafka, topic: string, plans: Plan[], keepAlive: () => Promise<void>): Promise<Plan[]> {
  const groupId = `${topic}.restore.${randomUUID()}`;
  // kafkajs decodes a whole fetch response at once: 1 MB takes it tens of ms (4 MB took 150–230 ms, at the same rate).
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, maxBytesPerPartition: 1 << 20, maxBytes: 2 << 20 });
  const pending = new Map(plans.map((plan) => [plan.target.partition, plan]));
  const mismatched: Plan[] = [];
  /** Partial restores whose first record (the checkpoint's) was checked. */
  const verified = new Set<number>();
  /** A record the store could not take (its disk full, say): the restore stops, and the take-over fails. */
  let failure: unknown;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const done = (partition: number): void => {
    pending.delete(partition);
    consumer.pause([{ topic, partitions: [partition] }]);
    if (pending.size === 0) finish();
  };
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const plan = pending.get(batch.partition);
        if (!plan) {
          consumer.pause([{ topic, partitions: [batch.partition] }]);
          return;
        }
        let slice = performance.now();
        for (const message of batch.messages) {
          if (performance.now() - slice > RESTORE_SLICE_MS) {
            await new Promise(setImmediate);
            slice = performance.now();
          }
          if (plan.from && !verified.has(batch.partition)) {
            if (BigInt(message.offset) < BigInt(plan.from.offset)) continue; // fetched before the seek took hold
            const same =
              message.offset === plan.from.offset &&
              changelogFingerprint(message.key, message.value) === plan.from.fingerprint;
            if (!same) {
              mismatched.push(plan);
              done(batch.partition);
              return;
            }
            verified.add(batch.partition);
          }
          if (message.key?.toString() === RESTORE_MARKER_KEY) {
            if (message.value?.toString() !== plan.marker.nonce) continue; // an older owner's marker
            done(batch.partition);
            return;
          }
          try {
            plan.target.apply(message);
          } catch (error) {
            failure = error;
            finish();
            return;
          }
          plan.records++;
        }
        await keepAlive();
      },
    });
    for (const plan of plans) {
      if (plan.from) consumer.seek({ topic, partition: plan.target.partition, offset: plan.from.offset });
    }
    if (pending.size > 0) await finished;
  } finally {
    // The group committed no offsets, so the broker forgets it on its own once it is empty.
    await consumer.disconnect().catch(() => undefined);
  }
  if (failure !== undefined)
    throw failure instanceof Error ? failure : new Error('the store refused a changelog record');
  return mismatched;
}
