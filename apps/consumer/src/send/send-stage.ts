import { AppConfig } from '@app/config';
import {
  AnnotationStageRecord,
  decodeSendCommand,
  decodeTxnRecord,
  SendCommand,
  TxnDescription,
  TxnRecord,
} from '@app/contracts';
import { RecordCollector } from '../stage/record-collector';
import { RecordContext, Stage } from '../stage/stage-handler';
import { stateFullReply } from '../stage/outcomes';
import { DiskStore } from '../store/disk-store';
import { TxnStore } from '../store/txn-store';
import { decide } from './decide';

export interface SendTopics {
  events: string;
  /** This stage's changelog. */
  txns: string;
  annotations: string;
}

/**
 * The first stage: send commands, partitioned by scope + txnId. Deduplicates each partition's transactions,
 * appends accepted events, and hands annotations to the annotation stage.
 */
export class SendStage implements Stage<TxnStore, TxnRecord, SendCommand> {
  readonly changelogTopic: string;
  /** A decision reads only the transaction's own remembered outcome (`staged.get`). */
  readonly decidesOnUncommitted = true;

  constructor(
    private readonly topics: SendTopics,
    private readonly windowMs: number,
    /** Where replies may go (KAFKA_REPLY_TOPIC_PREFIX): a command naming another topic is dead-lettered. */
    private readonly replyTopicPrefix: string,
  ) {
    this.changelogTopic = topics.txns;
  }

  static fromConfig(this: void, config: AppConfig): SendStage {
    const topics = {
      events: config.KAFKA_TOPIC_EVENTS,
      txns: config.KAFKA_TOPIC_TXNS,
      annotations: config.KAFKA_TOPIC_ANNOTATIONS,
    };
    return new SendStage(topics, config.TXN_WINDOW_MS, config.KAFKA_REPLY_TOPIC_PREFIX);
  }

  createStore(disk: DiskStore): TxnStore {
    return new TxnStore(disk, this.windowMs);
  }

  decodeChangelog(_identity: string, value: Buffer | null): TxnRecord | null {
    return decodeTxnRecord(value);
  }

  decode(value: Buffer | null): SendCommand {
    return decodeSendCommand(value, this.replyTopicPrefix);
  }

  process(
    command: SendCommand,
    { staged, out, position, partitions, now, counts, reserve }: RecordContext<TxnStore, TxnRecord>,
  ): void {
    const decision = decide(command, position, (identity) => staged.get(identity), now);
    const remembers = decision.kind === 'accepted' || (decision.kind === 'forward' && decision.remember !== null);
    if (remembers && !reserve(1)) {
      counts.refused++;
      out.reply(command.reply_to, stateFullReply(command.correlation_id));
      return;
    }
    switch (decision.kind) {
      case 'duplicate':
        counts.duplicates++;
        out.reply(command.reply_to, decision.reply);
        break;
      case 'accepted':
        counts.accepted++;
        staged.set(decision.identity, decision.remember, describe(command));
        out.addEvent(this.topics.events, decision.event, command);
        out.reply(command.reply_to, decision.reply);
        if (decision.redacts !== null) this.announceRedaction(out, partitions, command.room_id, decision.redacts);
        break;
      case 'forward': {
        if (decision.remember) staged.set(decision.identity, decision.remember, describe(command));
        const record: AnnotationStageRecord = {
          kind: 'annotation',
          annotation_id: decision.annotationId,
          txn_identity: decision.identity,
          command,
        };
        out.add(this.topics.annotations, { key: decision.annotationId, value: JSON.stringify(record) });
        break;
      }
    }
  }

  /**
   * Any annotation stage partition may hold the redacted event's annotation: tell them all (the annotations topic
   * is co-partitioned with the commands).
   */
  private announceRedaction(out: RecordCollector, partitions: number, roomId: string, redacts: string): void {
    const notice: AnnotationStageRecord = { kind: 'redaction', room_id: roomId, redacts };
    const value = JSON.stringify(notice);
    for (let partition = 0; partition < partitions; partition++) {
      out.add(this.topics.annotations, { key: redacts, value, partition });
    }
  }
}

/** What the changelog record says about the transaction, for people and tools (`npm run events -- txn`). */
const describe = (command: SendCommand): TxnDescription => ({
  scope_hash: command.scope_hash,
  room_id: command.room_id,
  type: command.type,
  txn_id: command.txn_id,
});
