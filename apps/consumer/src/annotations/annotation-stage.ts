import { AppConfig } from '@app/config';
import {
  ANNOTATION_STATE_KEYS,
  AnnotationHolder,
  AnnotationStageRecord,
  AnnotationStateValue,
  decodeAnnotationStageRecord,
  decodeAnnotationStateValue,
  TxnRecord,
} from '@app/contracts';
import { eventOf, replyFor, stateFullReply } from '../stage/outcomes';
import { RecordContext, Stage } from '../stage/stage-handler';
import { DiskStore } from '../store/disk-store';
import { WriteBuffer } from '../store/write-buffer';
import { AnnotationStore } from './annotation-store';

export interface AnnotationTopics {
  events: string;
  /** This stage's changelog. */
  state: string;
}

const DUPLICATE = { status: 400, errcode: 'M_DUPLICATE_ANNOTATION', error: 'Cannot send the same annotation twice' };

type Context = RecordContext<AnnotationStore, AnnotationStateValue>;

/**
 * The second stage: annotations, partitioned by annotation identity (room, target, type, sender, key), so two
 * sends of the same annotation meet here whichever txnId, partition or consumer they started from. The first
 * one is accepted; later ones get M_DUPLICATE_ANNOTATION until the first is redacted.
 */
export class AnnotationStage implements Stage<AnnotationStore, AnnotationStateValue, AnnotationStageRecord> {
  readonly changelogTopic: string;
  private readonly heldInBatch = new WeakMap<WriteBuffer<AnnotationStateValue>, Map<string, number>>();

  constructor(
    private readonly topics: AnnotationTopics,
    private readonly windowMs: number,
    /** Where replies may go (KAFKA_REPLY_TOPIC_PREFIX): a record whose command names another topic is dead-lettered. */
    private readonly replyTopicPrefix: string,
  ) {
    this.changelogTopic = topics.state;
  }

  static fromConfig(this: void, config: AppConfig): AnnotationStage {
    return new AnnotationStage(
      { events: config.KAFKA_TOPIC_EVENTS, state: config.KAFKA_TOPIC_ANNOTATION_STATE },
      config.TXN_WINDOW_MS,
      config.KAFKA_REPLY_TOPIC_PREFIX,
    );
  }

  createStore(disk: DiskStore): AnnotationStore {
    return new AnnotationStore(disk, this.windowMs);
  }

  decodeChangelog(key: string, value: Buffer | null): AnnotationStateValue | null {
    return decodeAnnotationStateValue(key, value);
  }

  decode(value: Buffer | null): AnnotationStageRecord {
    return decodeAnnotationStageRecord(value, this.replyTopicPrefix);
  }

  /** Transactions past the window leave the changelog too (it is compacted, never expired by time). */
  beginBatch(store: AnnotationStore, staged: WriteBuffer<AnnotationStateValue>): void {
    for (const key of store.expiredKeys()) staged.set(key, null);
  }

  process(record: AnnotationStageRecord, context: Context): void {
    if (record.kind === 'redaction') this.redact(record, context);
    else this.annotate(record, context);
  }

  private annotate(
    { command, annotation_id, txn_identity }: AnnotationStageRecord & { kind: 'annotation' },
    context: Context,
  ): void {
    const { staged, out, position, now, counts } = context;
    const txnKey = ANNOTATION_STATE_KEYS.txn(txn_identity);
    const previous = staged.get(txnKey);
    if (previous) {
      counts.duplicates++;
      out.reply(command.reply_to, replyFor(command.correlation_id, previous));
      return;
    }
    // A rejection adds one entry (the transaction), an acceptance two (the transaction and the holder).
    if (!context.reserve(2)) {
      counts.refused++;
      out.reply(command.reply_to, stateFullReply(command.correlation_id));
      return;
    }
    const holderKey = ANNOTATION_STATE_KEYS.holder(annotation_id);
    if (staged.get(holderKey)) {
      counts.rejected++;
      const rejection: TxnRecord = { error: DUPLICATE, ts: now };
      staged.set(txnKey, rejection);
      out.reply(command.reply_to, replyFor(command.correlation_id, rejection));
      return;
    }
    // Held annotations never expire: each sender gets a share of them, and all of them a bound of their own.
    const heldBySender = this.stagedHolders(staged);
    const held = context.store.heldOf(command.sender) + (heldBySender.get(command.sender) ?? 0);
    if (held >= context.heldPerSender || !context.reserveHeld()) {
      counts.refused++;
      out.reply(command.reply_to, stateFullReply(command.correlation_id));
      return;
    }
    heldBySender.set(command.sender, (heldBySender.get(command.sender) ?? 0) + 1);
    counts.accepted++;
    const event = eventOf(command, position);
    const outcome: TxnRecord = { event_id: event.event_id, ts: now };
    staged.set(holderKey, { event_id: event.event_id, room_id: event.room_id, sender: command.sender, ts: now });
    staged.set(txnKey, outcome);
    out.addEvent(this.topics.events, event, command);
    out.reply(command.reply_to, replyFor(command.correlation_id, outcome));
  }

  /** Holders staged in this batch, by sender. */
  private stagedHolders(staged: WriteBuffer<AnnotationStateValue>): Map<string, number> {
    let counts = this.heldInBatch.get(staged);
    if (!counts) this.heldInBatch.set(staged, (counts = new Map<string, number>()));
    return counts;
  }

  /** A redaction frees the annotation its event holds, accepted in an earlier batch or in this one. */
  private redact(
    { redacts, room_id }: AnnotationStageRecord & { kind: 'redaction' },
    { store, staged }: Context,
  ): void {
    const heldBefore = store.heldBy(redacts);
    const holderKey =
      staged.findStaged(
        (key, value) =>
          ANNOTATION_STATE_KEYS.parse(key)?.kind === 'holder' && (value as AnnotationHolder).event_id === redacts,
      ) ?? (heldBefore === undefined ? undefined : ANNOTATION_STATE_KEYS.holder(heldBefore));
    if (holderKey === undefined) return;
    const holder = staged.get(holderKey) as AnnotationHolder | undefined;
    // A redaction only acts in its own room: naming another room's event does nothing (as in Matrix).
    if (holder?.event_id === redacts && holder.room_id === room_id) staged.set(holderKey, null);
  }
}
