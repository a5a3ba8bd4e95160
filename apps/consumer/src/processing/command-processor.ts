import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Admin, Consumer, EachBatchPayload, Kafka, Message, TopicMessages } from 'kafkajs';
import { AppConfig } from '@app/config';
import { decodeSendCommand, EVENT_HEADERS, peekReplyAddress, SendReply, UndecodableCommand } from '@app/contracts';
import { BatchingProducer, createKafka, ensureTopics } from '@app/kafka';
import { StagedState } from '../dedup/dedup-state';
import { decide } from './decide';
import { PartitionOwner } from './partition-owner';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Consumes send commands partition by partition. For each batch, the events, the dedup changelog records,
 * dead letters and the consumed offsets commit in one Kafka transaction; replies go out only after it commits.
 */
@Injectable()
export class CommandProcessor implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(CommandProcessor.name);
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly consumer: Consumer;
  private readonly replies: BatchingProducer;
  /** Partitions this process owns, with their producer and state, or the promise of them while restoring. */
  private readonly owners = new Map<number, Promise<PartitionOwner>>();
  private assigned = new Set<number>();
  private joined = false;
  private restoring = 0;

  constructor(private readonly config: AppConfig) {
    this.kafka = createKafka(config, `${config.KAFKA_CLIENT_ID}-consumer`);
    this.admin = this.kafka.admin();
    this.consumer = this.kafka.consumer({
      groupId: config.KAFKA_CONSUMER_GROUP,
      readUncommitted: false,
      maxWaitTimeInMs: 500,
      sessionTimeout: config.CONSUMER_SESSION_TIMEOUT_MS,
      heartbeatInterval: Math.floor(config.CONSUMER_SESSION_TIMEOUT_MS / 5),
      retry: { retries: 10 },
    });
    this.replies = new BatchingProducer(this.kafka, config.PRODUCER_LINGER_MS, config.PRODUCER_MAX_BATCH);
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => this.onAssignment(payload.memberAssignment));
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      this.joined = false;
      this.logger.error(`consumer crashed (${payload.error.message}); restart=${String(payload.restart)}`);
    });
  }

  /** Ready once in the group with every assigned partition's state restored. */
  get isReady(): boolean {
    return this.joined && this.restoring === 0;
  }

  async onModuleInit(): Promise<void> {
    await this.admin.connect();
    await ensureTopics(this.admin, this.config);
    await this.replies.connect();
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.config.KAFKA_TOPIC_COMMANDS, fromBeginning: true });
    await this.consumer.run({
      autoCommit: false, // offsets commit inside each batch's transaction
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.config.CONSUMER_PARTITIONS_CONCURRENTLY,
      eachBatch: (payload) => this.processBatch(payload),
    });
  }

  async onApplicationShutdown(): Promise<void> {
    // disconnect() waits for the running batches, whose transactions then commit or abort as usual.
    await this.consumer.disconnect().catch(() => undefined);
    await this.releaseAll([...this.owners.keys()]);
    await this.replies.disconnect().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
  }

  private onAssignment(assignment: Record<string, number[]>): void {
    const now = new Set(assignment[this.config.KAFKA_TOPIC_COMMANDS] ?? []);
    const revoked = [...this.owners.keys()].filter((partition) => !now.has(partition));
    void this.releaseAll(revoked);
    this.assigned = now;
    this.joined = true;
    const added = [...now].filter((partition) => !this.owners.has(partition));
    if (added.length > 0) this.acquire(added, async () => undefined);
    this.logger.log(`assigned partitions [${[...now].sort((a, b) => a - b).join(', ')}]`);
  }

  /** Starts taking over partitions; each one's promise settles when its state is restored. */
  private acquire(partitions: number[], keepAlive: () => Promise<void>): void {
    this.restoring++;
    const acquired = PartitionOwner.acquire(
      this.kafka,
      {
        group: this.config.KAFKA_CONSUMER_GROUP,
        commandsTopic: this.config.KAFKA_TOPIC_COMMANDS,
        txnsTopic: this.config.KAFKA_TOPIC_TXNS,
        windowMs: this.config.TXN_WINDOW_MS,
      },
      partitions,
      keepAlive,
    ).finally(() => this.restoring--);
    acquired.then(
      ({ stats }) => this.logger.log(`restored partitions [${partitions.join(', ')}]: ${stats.records} records in ${stats.millis} ms`),
      (error: unknown) => {
        this.logger.error(`restoring partitions [${partitions.join(', ')}] failed: ${String(error)}`);
        for (const partition of partitions) this.owners.delete(partition);
      },
    );
    partitions.forEach((partition, i) => this.owners.set(partition, acquired.then(({ owners }) => owners[i])));
  }

  private async releaseAll(partitions: number[]): Promise<void> {
    const owners = partitions.flatMap((partition) => this.owners.get(partition) ?? []);
    partitions.forEach((partition) => this.owners.delete(partition));
    await Promise.all(owners.map((owner) => owner.then((o) => o.release(), () => undefined)));
  }

  private async ownerOf(partition: number, heartbeat: () => Promise<void>): Promise<PartitionOwner> {
    if (!this.owners.has(partition)) this.acquire([partition], heartbeat);
    const owner = this.owners.get(partition)!;
    // Restoring can take a while: keep the group membership alive meanwhile.
    const beat = setInterval(() => void heartbeat().catch(() => undefined), 1000);
    try {
      return await owner;
    } finally {
      clearInterval(beat);
    }
  }

  private async processBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const heartbeat = (): Promise<void> => payload.heartbeat();
    if (batch.messages.length === 0 || !payload.isRunning() || payload.isStale()) return;
    const { topic, partition } = batch;
    let owner: PartitionOwner;
    try {
      owner = await this.ownerOf(partition, heartbeat);
    } catch {
      await sleep(500); // not resolving the offsets makes kafkajs fetch this batch again
      return;
    }

    const now = Date.now();
    const staged = new StagedState(owner.state);
    const events: Message[] = [];
    const txns: Message[] = [];
    const deadLetters: Message[] = [];
    const replies: { to: string; reply: SendReply }[] = [];

    for (const message of batch.messages) {
      try {
        const command = decodeSendCommand(message.value);
        const decision = decide(command, { topic, partition, offset: message.offset }, (id) => staged.get(id), now);
        replies.push({ to: command.reply_to, reply: decision.reply });
        if (decision.kind === 'duplicate') continue;
        staged.set(decision.identity, decision.remember);
        txns.push({ key: decision.identity, value: JSON.stringify(decision.remember), partition });
        events.push({
          key: decision.event.room_id,
          value: JSON.stringify(decision.event),
          headers: {
            [EVENT_HEADERS.txnId]: command.txn_id,
            [EVENT_HEADERS.scopeHash]: command.scope_hash,
            ...(command.device_id === null ? {} : { [EVENT_HEADERS.deviceId]: command.device_id }),
          },
        });
      } catch (error) {
        if (!(error instanceof UndecodableCommand)) throw error;
        deadLetters.push({
          key: message.key,
          value: message.value,
          headers: { reason: error.message, source: `${topic}/${partition}/${message.offset}` },
        });
        const address = peekReplyAddress(message.value);
        if (address) {
          replies.push({
            to: address.reply_to,
            reply: {
              correlation_id: address.correlation_id,
              status: 500,
              body: { errcode: 'M_UNKNOWN', error: 'The server could not process this event' },
            },
          });
        }
      }
    }

    const topicMessages: TopicMessages[] = [
      { topic: this.config.KAFKA_TOPIC_EVENTS, messages: events },
      { topic: this.config.KAFKA_TOPIC_TXNS, messages: txns },
      { topic: this.config.KAFKA_TOPIC_DEAD_LETTERS, messages: deadLetters },
    ].filter((entry) => entry.messages.length > 0);
    const next = (BigInt(batch.lastOffset()) + 1n).toString();
    const tx = await owner.producer.transaction();
    try {
      if (topicMessages.length > 0) await tx.sendBatch({ acks: -1, topicMessages });
      await tx.sendOffsets({
        consumerGroupId: this.config.KAFKA_CONSUMER_GROUP,
        topics: [{ topic, partitions: [{ partition, offset: next }] }],
      });
      await tx.commit();
    } catch (error) {
      await tx.abort().catch(() => undefined);
      this.logger.warn(`batch ${topic}/${partition}@${batch.firstOffset()} not committed (${String(error)}); retrying it`);
      // A failed or fenced transaction leaves this process unsure of what it owns: re-take the partition.
      await this.releaseAll([partition]);
      await sleep(200);
      await heartbeat().catch(() => undefined);
      return;
    }
    staged.commit();
    payload.resolveOffset(batch.lastOffset());
    for (const { to, reply } of replies) {
      this.replies.send(to, { value: JSON.stringify(reply) }).catch(() => {
        // The gateway may be gone; its client retries the same transaction and gets the remembered answer.
      });
    }
  }
}
