import { KafkaMessage } from 'kafkajs';
import { AnnotationStageRecord, decodeSendCommand, decodeTxnRecord, SendCommand, TxnDescription, TxnRecord } from '@app/contracts';
import { BatchResult, InputBatch, PartitionHandler } from '@app/kafka';
import { DedupState, StagedChanges } from '../dedup/dedup-state';
import { BatchOutput, ReplySender } from './batch-output';
import { StateBudget, stateFullReply } from '../state/state-budget';
import { decide, isPastWindow } from './decide';

export interface SendCounts {
  accepted: number;
  duplicates: number;
  forwarded: number;
  deadLetters: number;
  /** Commands older than the window, dead-lettered unappended. */
  expired: number;
  /** New transactions turned away (retryable) because the state budget was spent. */
  refused: number;
}

export interface SendTopics {
  events: string;
  txns: string;
  annotations: string;
  deadLetters: string;
}

/**
 * The first stage: send commands, partitioned by scope + txnId. Deduplicates each partition's transactions,
 * appends accepted events, and hands annotations to the annotation stage.
 */
export class SendHandler implements PartitionHandler<DedupState> {
  constructor(
    private readonly topics: SendTopics,
    private readonly annotationPartitions: number,
    private readonly windowMs: number,
    private readonly sendReply: ReplySender,
    private readonly budget: StateBudget,
    private readonly observe: (counts: SendCounts) => void = () => undefined,
  ) {}

  createState(): DedupState {
    return this.budget.track(new DedupState(this.windowMs));
  }

  release(state: DedupState): void {
    this.budget.untrack(state);
  }

  restore(state: DedupState, message: KafkaMessage): void {
    const identity = message.key?.toString();
    if (identity) state.apply(identity, decodeTxnRecord(message.value));
  }

  processBatch(state: DedupState, batch: InputBatch): BatchResult {
    const now = Date.now();
    const staged = new StagedChanges<TxnRecord>((identity) => state.get(identity));
    const out = new BatchOutput(this.topics.deadLetters);
    const counts: SendCounts = { accepted: 0, duplicates: 0, forwarded: 0, deadLetters: 0, expired: 0, refused: 0 };
    const described = new Map<string, TxnDescription>();
    let room = this.budget.remaining();
    for (const message of batch.messages) {
      const position = { topic: batch.topic, partition: batch.partition, offset: message.offset };
      try {
        if (isPastWindow(Number(message.timestamp), now, this.windowMs)) {
          counts.expired++;
          out.deadLetter(message, `${position.topic}/${position.partition}/${position.offset}`, 'expired');
          continue;
        }
        const command = decodeSendCommand(message.value);
        const decision = decide(command, position, (identity) => staged.get(identity), now);
        if ((decision.kind === 'accepted' || (decision.kind === 'forward' && decision.remember)) && room-- <= 0) {
          counts.refused++;
          out.reply(command.reply_to, stateFullReply(command.correlation_id));
          continue;
        }
        switch (decision.kind) {
          case 'duplicate':
            counts.duplicates++;
            out.reply(command.reply_to, decision.reply);
            break;
          case 'accepted':
            counts.accepted++;
            staged.set(decision.identity, decision.remember);
            described.set(decision.identity, describe(command));
            out.addEvent(this.topics.events, decision.event, command);
            out.reply(command.reply_to, decision.reply);
            if (decision.redacts !== null) this.announceRedaction(out, command.room_id, decision.redacts);
            break;
          case 'forward': {
            counts.forwarded++;
            if (decision.remember) {
              staged.set(decision.identity, decision.remember);
              described.set(decision.identity, describe(command));
            }
            const record: AnnotationStageRecord = { kind: 'annotation', annotation_id: decision.annotationId, txn_identity: decision.identity, command };
            out.add(this.topics.annotations, { key: decision.annotationId, value: JSON.stringify(record) });
            break;
          }
        }
      } catch (error) {
        counts.deadLetters++;
        out.deadLetter(message, `${position.topic}/${position.partition}/${position.offset}`, error instanceof Error ? error.message : String(error));
      }
    }
    out.add(this.topics.txns, ...staged.toChangelog(batch.partition, (identity, record) => ({ ...record, ...described.get(identity) })));
    return {
      records: out.records(),
      afterCommit: () => {
        staged.commit((identity, record) => state.apply(identity, record));
        out.sendReplies(this.sendReply);
        this.observe(counts);
      },
    };
  }

  /** Any annotation stage partition may hold the redacted event's annotation: tell them all. */
  private announceRedaction(out: BatchOutput, roomId: string, redacts: string): void {
    const notice: AnnotationStageRecord = { kind: 'redaction', room_id: roomId, redacts };
    const value = JSON.stringify(notice);
    for (let partition = 0; partition < this.annotationPartitions; partition++) {
      out.add(this.topics.annotations, { key: redacts, value, partition });
    }
  }
}

const describe = (command: SendCommand): TxnDescription => ({
  scope_hash: command.scope_hash,
  room_id: command.room_id,
  type: command.type,
  txn_id: command.txn_id,
});
