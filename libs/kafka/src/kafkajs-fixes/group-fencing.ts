/**
 * The request versions of KIP-447 (exactly-once v2: one transactional producer per consumer instance) that kafkajs
 * 2.2.4 lacks:
 * - TxnOffsetCommit v3 carries the consumer's group generation, member id and group instance id, so the group
 *   coordinator refuses the offsets of a member the group has moved on from (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
 *   FENCED_INSTANCE_ID): a zombie's transaction can then only abort.
 * - OffsetFetch v7 carries require_stable: while a transaction that commits offsets of a partition is pending, the
 *   coordinator answers UNSTABLE_OFFSET_COMMIT (retriable) for it, so a new owner never starts from an offset that
 *   transaction may still move.
 * With this fix a transaction's `sendOffsets` takes `consumerGroupMetadata` ({@link ConsumerGroupMetadata}, as the Java
 * client's `sendOffsetsToTransaction`), `admin.fetchOffsets` takes `requireStable`, and the consumer's GROUP_JOIN
 * event carries the `generationId`. Asking for either guarantee of a broker too old to give it (before Kafka 2.5)
 * throws instead of silently dropping it. Like the other fixes, it must run before kafkajs is loaded.
 */
import type { Admin, TopicOffsets, Transaction } from 'kafkajs';
import { applyEdits, replaceKafkajsModule } from './source-patch';

/** Who commits offsets in a transaction: the consumer's membership as the group coordinator knows it (KIP-447). */
export interface ConsumerGroupMetadata {
  generationId: number;
  memberId: string;
  groupInstanceId?: string | null;
}

interface EncoderLike {
  writeUVarIntBytes(value?: Buffer | null): EncoderLike;
  writeUVarIntString(value: string | null): EncoderLike;
  writeUVarIntArray(values: EncoderLike[] | null): EncoderLike;
  writeInt64(value: string | number | bigint): EncoderLike;
  writeInt32(value: number): EncoderLike;
  writeInt16(value: number): EncoderLike;
  writeBoolean(value: boolean): EncoderLike;
  writeUVarInt(value: number): EncoderLike;
}
interface DecoderLike {
  readTaggedFields(): unknown;
  readInt16(): number;
  readInt32(): number;
  readInt64(): { toString(): string };
  readUVarIntString(): string | null;
  readUVarIntArray<T>(reader: (decoder: DecoderLike) => T): T[] | null;
}
interface RequestDefinitions {
  versions: string[];
  protocol: (options: { version: number }) => ((args: Record<string, unknown>) => unknown) | undefined;
}
interface Topics<P> {
  topic: string;
  partitions: P[];
}

/* eslint-disable @typescript-eslint/no-require-imports -- kafkajs' wire codec and error table, internal modules */
const Encoder = require('kafkajs/src/protocol/encoder') as new () => EncoderLike;
const Decoder = require('kafkajs/src/protocol/decoder') as new (buffer: Buffer) => DecoderLike;
const { failure, createErrorFromCode } = require('kafkajs/src/protocol/error') as {
  failure: (code: number) => boolean;
  createErrorFromCode: (code: number) => Error;
};
const { KafkaJSNonRetriableError } = require('kafkajs/src/errors') as {
  KafkaJSNonRetriableError: new (message: string) => Error;
};
const apiKeys = require('kafkajs/src/protocol/requests/apiKeys') as Record<string, number>;
/* eslint-enable @typescript-eslint/no-require-imports */

/** kafkajs sends the request header v1; a flexible request's header (v2) adds an empty tag buffer, its first byte. */
const flexible = (): EncoderLike => new Encoder().writeUVarIntBytes();
const throwFirstError = (codes: number[]): void => {
  const code = codes.find((c) => failure(c));
  if (code !== undefined) throw createErrorFromCode(code);
};

/**
 * TxnOffsetCommit v3 (flexible): transactional_id group_id producer_id producer_epoch generation_id member_id
 * group_instance_id [topics [partitions: partition_index committed_offset committed_leader_epoch metadata]].
 */
export function txnOffsetCommitV3(args: {
  transactionalId: string;
  groupId: string;
  producerId: string | number;
  producerEpoch: number;
  generationId?: number;
  memberId?: string;
  groupInstanceId?: string | null;
  topics: Topics<{ partition: number; offset: string; metadata?: string | null }>[];
}) {
  return {
    request: {
      apiKey: apiKeys.TxnOffsetCommit,
      apiVersion: 3,
      apiName: 'TxnOffsetCommit',
      encode: async () =>
        flexible()
          .writeUVarIntString(args.transactionalId)
          .writeUVarIntString(args.groupId)
          .writeInt64(args.producerId)
          .writeInt16(args.producerEpoch)
          .writeInt32(args.generationId ?? -1)
          .writeUVarIntString(args.memberId ?? '')
          .writeUVarIntString(args.groupInstanceId ?? null)
          .writeUVarIntArray(
            args.topics.map(({ topic, partitions }) =>
              new Encoder()
                .writeUVarIntString(topic)
                .writeUVarIntArray(
                  partitions.map(({ partition, offset, metadata }) =>
                    new Encoder()
                      .writeInt32(partition)
                      .writeInt64(offset)
                      .writeInt32(-1) // committed_leader_epoch: unknown
                      .writeUVarIntString(metadata ?? null)
                      .writeUVarIntBytes(),
                  ),
                )
                .writeUVarIntBytes(),
            ),
          )
          .writeUVarIntBytes(),
    },
    response: {
      decode: async (raw: Buffer) => {
        const decoder = new Decoder(raw);
        decoder.readTaggedFields(); // response header v1
        const throttleTime = decoder.readInt32();
        const topics = decoder.readUVarIntArray((d) => {
          const topic = d.readUVarIntString();
          const partitions = d.readUVarIntArray((p) => {
            const partition = { partition: p.readInt32(), errorCode: p.readInt16() };
            p.readTaggedFields();
            return partition;
          });
          d.readTaggedFields();
          return { topic, partitions: partitions ?? [] };
        });
        return { throttleTime: 0, clientSideThrottleTime: throttleTime, topics: topics ?? [] };
      },
      parse: async (data: { topics: Topics<{ errorCode: number }>[] }) => {
        throwFirstError(data.topics.flatMap(({ partitions }) => partitions.map((p) => p.errorCode)));
        return data;
      },
    },
  };
}

/** OffsetFetch v7 (flexible): group_id [topics [partition_indexes]] require_stable. */
export function offsetFetchV7(args: {
  groupId: string;
  topics: Topics<{ partition: number }>[] | null;
  requireStable?: boolean;
}) {
  return {
    request: {
      apiKey: apiKeys.OffsetFetch,
      apiVersion: 7,
      apiName: 'OffsetFetch',
      encode: async () =>
        flexible()
          .writeUVarIntString(args.groupId)
          .writeUVarIntArray(
            args.topics === null
              ? null
              : args.topics.map(({ topic, partitions }) =>
                  compactTopic(
                    topic,
                    partitions.map((p) => p.partition),
                  ),
                ),
          )
          .writeBoolean(args.requireStable ?? false)
          .writeUVarIntBytes(),
    },
    response: {
      decode: async (raw: Buffer) => {
        const decoder = new Decoder(raw);
        decoder.readTaggedFields(); // response header v1
        const throttleTime = decoder.readInt32();
        const responses = decoder.readUVarIntArray((d) => {
          const topic = d.readUVarIntString();
          const partitions = d.readUVarIntArray((p) => {
            const partition = {
              partition: p.readInt32(),
              offset: p.readInt64().toString(),
              leaderEpoch: p.readInt32(),
              metadata: p.readUVarIntString(),
              errorCode: p.readInt16(),
            };
            p.readTaggedFields();
            return partition;
          });
          d.readTaggedFields();
          return { topic, partitions: partitions ?? [] };
        });
        const errorCode = decoder.readInt16();
        return { throttleTime: 0, clientSideThrottleTime: throttleTime, responses: responses ?? [], errorCode };
      },
      parse: async (data: { errorCode: number; responses: Topics<{ errorCode: number }>[] }) => {
        throwFirstError([
          data.errorCode,
          ...data.responses.flatMap(({ partitions }) => partitions.map((p) => p.errorCode)),
        ]);
        return data;
      },
    },
  };
}

/** The topic entry of OffsetFetch v7: name, compact int32 array of partition indexes, empty tag buffer. */
function compactTopic(topic: string, partitions: number[]): EncoderLike {
  const encoder = new Encoder().writeUVarIntString(topic);
  encoder.writeUVarInt(partitions.length + 1); // a compact array's length is its size + 1
  partitions.forEach((partition) => encoder.writeInt32(partition));
  return encoder.writeUVarIntBytes();
}

/**
 * Adds `version` to kafkajs' definitions of a request, built by `build`; a version between kafkajs' last and it
 * falls back to kafkajs' last (same fields for what kafkajs sends). A request that asks for what only `version` can
 * carry (`needs`) is refused by a broker that cannot answer it.
 */
export function addRequestVersion(
  definitions: RequestDefinitions,
  expected: string[],
  version: number,
  build: (args: never) => unknown,
  needs: (args: Record<string, unknown>) => string | undefined,
): void {
  if (definitions.versions.join() !== expected.join()) {
    throw new Error('kafkajs-fixes/group-fencing: kafkajs is not the version this fix was written for');
  }
  const original = definitions.protocol.bind(definitions);
  const last = Number(expected[expected.length - 1]);
  definitions.versions = [...expected, String(version)];
  definitions.protocol = ({ version: chosen }) => {
    if (chosen >= version) return build as (args: Record<string, unknown>) => unknown;
    const older = original({ version: Math.min(chosen, last) });
    return (args) => {
      const missing = needs(args);
      if (missing) {
        throw new KafkaJSNonRetriableError(
          `the broker answers this request at version ${chosen} at most, which cannot carry ${missing} ` +
            '(KIP-447 needs Kafka 2.5 or later)',
        );
      }
      return older!(args);
    };
  };
}

/* eslint-disable @typescript-eslint/no-require-imports -- kafkajs' request definitions, mutated before first use */
addRequestVersion(
  require('kafkajs/src/protocol/requests/txnOffsetCommit') as RequestDefinitions,
  ['0', '1'],
  3,
  txnOffsetCommitV3,
  (args) => (args.generationId !== undefined && args.generationId !== -1 ? 'the group generation' : undefined),
);
addRequestVersion(
  require('kafkajs/src/protocol/requests/offsetFetch') as RequestDefinitions,
  ['1', '2', '3', '4'],
  7,
  offsetFetchV7,
  (args) => (args.requireStable ? 'require_stable' : undefined),
);
/* eslint-enable @typescript-eslint/no-require-imports */

/** The broker's request methods pass the new fields through. */
export function patchBroker(source: string): string {
  return applyEdits('group-fencing', source, [
    [
      `  async offsetFetch({ groupId, topics }) {
    const offsetFetch = this.lookupRequest(apiKeys.OffsetFetch, requests.OffsetFetch)
    return await this[PRIVATE.SEND_REQUEST](offsetFetch({ groupId, topics }))`,
      `  async offsetFetch({ groupId, topics, requireStable = false }) {
    const offsetFetch = this.lookupRequest(apiKeys.OffsetFetch, requests.OffsetFetch)
    return await this[PRIVATE.SEND_REQUEST](offsetFetch({ groupId, topics, requireStable }))`,
    ],
    [
      `  async txnOffsetCommit({ transactionalId, groupId, producerId, producerEpoch, topics }) {
    const txnOffsetCommit = this.lookupRequest(apiKeys.TxnOffsetCommit, requests.TxnOffsetCommit)
    return await this[PRIVATE.SEND_REQUEST](
      txnOffsetCommit({ transactionalId, groupId, producerId, producerEpoch, topics })
    )`,
      `  async txnOffsetCommit({ transactionalId, groupId, producerId, producerEpoch, topics, generationId, memberId, groupInstanceId }) {
    const txnOffsetCommit = this.lookupRequest(apiKeys.TxnOffsetCommit, requests.TxnOffsetCommit)
    return await this[PRIVATE.SEND_REQUEST](
      txnOffsetCommit({ transactionalId, groupId, producerId, producerEpoch, topics, generationId, memberId, groupInstanceId })
    )`,
    ],
  ]);
}

/** A transaction's sendOffsets passes the consumer's group metadata to the transaction manager. */
export function patchProducer(source: string): string {
  return applyEdits('group-fencing', source, [
    [
      `      sendOffsets: transactionGuard(async ({ consumerGroupId, topics }) => {
        await transactionalEosManager.sendOffsets({ consumerGroupId, topics })`,
      `      sendOffsets: transactionGuard(async ({ consumerGroupId, topics, consumerGroupMetadata }) => {
        await transactionalEosManager.sendOffsets({ consumerGroupId, topics, consumerGroupMetadata })`,
    ],
  ]);
}

/** admin.fetchOffsets takes `requireStable`. */
export function patchAdmin(source: string): string {
  return applyEdits('group-fencing', source, [
    [
      'const fetchOffsets = async ({ groupId, topics, resolveOffsets = false }) => {',
      'const fetchOffsets = async ({ groupId, topics, resolveOffsets = false, requireStable = false }) => {',
    ],
    [
      `    let { responses: consumerOffsets } = await coordinator.offsetFetch({
      groupId,
      topics: topicsToFetch,
    })`,
      `    let { responses: consumerOffsets } = await coordinator.offsetFetch({
      groupId,
      topics: topicsToFetch,
      requireStable,
    })`,
    ],
  ]);
}

/** The consumer's GROUP_JOIN event says which generation it joined. */
export function patchConsumerGroup(source: string): string {
  return applyEdits('group-fencing', source, [
    [
      `          groupId: this.groupId,
          memberId: this.memberId,
          leaderId: this.leaderId,`,
      `          groupId: this.groupId,
          generationId: this.generationId,
          memberId: this.memberId,
          leaderId: this.leaderId,`,
    ],
  ]);
}

// In dependency order: compiling a module loads what it requires (the admin loads the consumer group), and a
// module already loaded cannot be replaced any more.
replaceKafkajsModule('group-fencing', require.resolve('kafkajs/src/broker'), patchBroker);
replaceKafkajsModule('group-fencing', require.resolve('kafkajs/src/consumer/consumerGroup'), patchConsumerGroup);
replaceKafkajsModule('group-fencing', require.resolve('kafkajs/src/admin'), patchAdmin);
replaceKafkajsModule('group-fencing', require.resolve('kafkajs/src/producer'), patchProducer);

/** Offsets of a transaction, fenced by the group membership that consumed them (Java's sendOffsetsToTransaction). */
export async function sendOffsetsToTransaction(
  transaction: Transaction,
  groupId: string,
  topics: TopicOffsets[],
  metadata: ConsumerGroupMetadata,
): Promise<void> {
  await (transaction.sendOffsets as (offsets: unknown) => Promise<void>)({
    consumerGroupId: groupId,
    topics,
    consumerGroupMetadata: metadata,
  });
}

/** The membership a GROUP_JOIN event reports (the generation through this fix). */
export function groupMetadataOfJoin(payload: { memberId: string }): ConsumerGroupMetadata {
  const { generationId } = payload as { generationId?: number };
  if (typeof generationId !== 'number') throw new Error('kafkajs-fixes/group-fencing: GROUP_JOIN has no generationId');
  return { generationId, memberId: payload.memberId };
}

/**
 * A group's committed offsets of one topic, read with require_stable: while a transaction that commits offsets of
 * a partition is pending, the coordinator answers UNSTABLE_OFFSET_COMMIT, retried here until `timeoutMs` (about the
 * longest a transaction may stay open) has passed. Partitions with no committed offset are left out.
 */
export async function fetchStableOffsets(
  admin: Admin,
  groupId: string,
  topic: string,
  timeoutMs: number,
): Promise<Map<number, bigint>> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      const [offsets] = await (admin.fetchOffsets as (options: unknown) => ReturnType<Admin['fetchOffsets']>)({
        groupId,
        topics: [topic],
        requireStable: true,
      });
      return new Map(
        offsets.partitions.filter((p) => Number(p.offset) >= 0).map((p) => [p.partition, BigInt(p.offset)]),
      );
    } catch (error) {
      if ((error as { type?: string }).type !== 'UNSTABLE_OFFSET_COMMIT' || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.min(500, 20 * 2 ** attempt)));
    }
  }
}
