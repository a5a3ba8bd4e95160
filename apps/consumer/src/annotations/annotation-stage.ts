import { KafkaMessage } from 'kafkajs';
import {
  ANNOTATION_STATE_KEYS,
  AnnotationHolder,
  AnnotationStateValue,
  decodeAnnotationStageRecord,
  TxnRecord,
} from '@app/contracts';
import { BatchResult, InputBatch, PartitionHandler } from '@app/kafka';
import { StagedChanges } from '../dedup/dedup-state';
import { BatchOutput, ReplySender } from '../processing/batch-output';
import { eventOf, isPastWindow, replyFor } from '../processing/decide';
import { StateBudget, stateFullReply } from '../state/state-budget';
import { AnnotationState } from './annotation-state';

export interface AnnotationTopics {
  events: string;
  /** This stage's changelog. */
  state: string;
  deadLetters: string;
}

export interface AnnotationCounts {
  accepted: number;
  rejected: number;
  expired: number;
  refused: number;
}

const DUPLICATE = { status: 400, errcode: 'M_DUPLICATE_ANNOTATION', error: 'Cannot send the same annotation twice' };

/**
 * The second stage: annotations, partitioned by annotation identity (room, target, type, sender, key), so two
 * sends of the same annotation meet here whichever txnId, partition or consumer they started from. The first
 * one is accepted; later ones get M_DUPLICATE_ANNOTATION until the first is redacted.
 */
export class AnnotationHandler implements PartitionHandler<AnnotationState> {
  constructor(
    private readonly topics: AnnotationTopics,
    private readonly windowMs: number,
    private readonly sendReply: ReplySender,
    private readonly budget: StateBudget,
    private readonly observe: (counts: AnnotationCounts) => void = () => undefined,
  ) {}

  createState(): AnnotationState {
    return this.budget.track(new AnnotationState(this.windowMs));
  }

  release(state: AnnotationState): void {
    this.budget.untrack(state);
  }

  restore(state: AnnotationState, message: KafkaMessage): void {
    const key = message.key?.toString();
    if (!key) return;
    state.apply(key, message.value === null ? null : (JSON.parse(message.value.toString()) as AnnotationStateValue));
  }

  processBatch(state: AnnotationState, batch: InputBatch): BatchResult {
    const now = Date.now();
    const staged = new StagedChanges<AnnotationStateValue>((key) => state.get(key));
    const acceptedHere = new Map<string, string>(); // event_id → annotation identity, for redactions in this batch
    const out = new BatchOutput(this.topics.deadLetters);
    const counts: AnnotationCounts = { accepted: 0, rejected: 0, expired: 0, refused: 0 };
    // Transactions past the window leave the changelog too (it is compacted, never expired by time).
    for (const key of state.expiredKeys()) staged.set(key, null);
    let room = this.budget.remaining();
    for (const message of batch.messages) {
      const position = { topic: batch.topic, partition: batch.partition, offset: message.offset };
      try {
        if (isPastWindow(Number(message.timestamp), now, this.windowMs)) {
          counts.expired++;
          out.deadLetter(message, `${position.topic}/${position.partition}/${position.offset}`, 'expired');
          continue;
        }
        const record = decodeAnnotationStageRecord(message.value);
        if (record.kind === 'redaction') {
          const annotationId = acceptedHere.get(record.redacts) ?? state.heldBy(record.redacts);
          if (annotationId === undefined) continue;
          const holderKey = ANNOTATION_STATE_KEYS.holder(annotationId);
          const holder = staged.get(holderKey) as AnnotationHolder | undefined;
          // A redaction only acts in its own room: naming another room's event does nothing (as in Matrix).
          if (holder?.event_id === record.redacts && holder.room_id === record.room_id) staged.set(holderKey, null);
          continue;
        }
        const { command } = record;
        const txnKey = ANNOTATION_STATE_KEYS.txn(record.txn_identity);
        const previous = staged.get(txnKey);
        if (previous) {
          out.reply(command.reply_to, replyFor(command.correlation_id, previous));
          continue;
        }
        // A rejection adds one entry (the transaction), an acceptance two (the transaction and the holder).
        if ((room -= 2) < 0) {
          counts.refused++;
          out.reply(command.reply_to, stateFullReply(command.correlation_id));
          continue;
        }
        const holderKey = ANNOTATION_STATE_KEYS.holder(record.annotation_id);
        if (staged.get(holderKey)) {
          counts.rejected++;
          const rejection: TxnRecord = { error: DUPLICATE, ts: now };
          staged.set(txnKey, rejection);
          out.reply(command.reply_to, replyFor(command.correlation_id, rejection));
          continue;
        }
        counts.accepted++;
        const event = eventOf(command, position);
        const outcome: TxnRecord = { event_id: event.event_id, ts: now };
        staged.set(holderKey, { event_id: event.event_id, room_id: event.room_id, ts: now });
        staged.set(txnKey, outcome);
        acceptedHere.set(event.event_id, record.annotation_id);
        out.addEvent(this.topics.events, event, command);
        out.reply(command.reply_to, replyFor(command.correlation_id, outcome));
      } catch (error) {
        out.deadLetter(message, `${position.topic}/${position.partition}/${position.offset}`, error instanceof Error ? error.message : String(error));
      }
    }
    out.add(this.topics.state, ...staged.toChangelog(batch.partition));
    return {
      records: out.records(),
      afterCommit: () => {
        staged.commit((key, value) => state.apply(key, value));
        out.sendReplies(this.sendReply);
        this.observe(counts);
      },
    };
  }
}
