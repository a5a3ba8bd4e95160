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
import { eventOf, replyFor } from '../processing/decide';
import { AnnotationState } from './annotation-state';

export interface AnnotationTopics {
  events: string;
  /** This stage's changelog. */
  state: string;
  deadLetters: string;
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
    private readonly observe: (counts: { accepted: number; rejected: number }) => void = () => undefined,
  ) {}

  createState(): AnnotationState {
    return new AnnotationState(this.windowMs);
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
    const counts = { accepted: 0, rejected: 0 };
    for (const message of batch.messages) {
      const position = { topic: batch.topic, partition: batch.partition, offset: message.offset };
      try {
        const record = decodeAnnotationStageRecord(message.value);
        if (record.kind === 'redaction') {
          const annotationId = acceptedHere.get(record.redacts) ?? state.heldBy(record.redacts);
          if (annotationId === undefined) continue;
          const holderKey = ANNOTATION_STATE_KEYS.holder(annotationId);
          if ((staged.get(holderKey) as AnnotationHolder | undefined)?.event_id === record.redacts) staged.set(holderKey, null);
          continue;
        }
        const { command } = record;
        const txnKey = ANNOTATION_STATE_KEYS.txn(record.txn_identity);
        const previous = staged.get(txnKey);
        if (previous) {
          out.reply(command.reply_to, replyFor(command.correlation_id, previous));
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
        staged.set(holderKey, { event_id: event.event_id, ts: now });
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
