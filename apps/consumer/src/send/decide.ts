import { RoomEvent, SendCommand, SendReply, TxnRecord } from '@app/contracts';
import { annotationIdentity, annotationOf, LogPosition, redactedEventOf, transactionIdentity } from '@app/matrix';
import { eventOf, replyFor } from '../stage/outcomes';

export type Decision =
  /** A new transaction: append the event, remember the outcome, answer with the new event ID. */
  | {
      kind: 'accepted';
      identity: string;
      event: RoomEvent;
      remember: TxnRecord;
      reply: SendReply;
      redacts: string | null;
    }
  /** A transaction seen before (a retry, or a concurrent duplicate): answer with the remembered outcome. */
  | { kind: 'duplicate'; reply: SendReply }
  /**
   * An annotation, whose uniqueness only the annotation stage can judge: hand it over (and remember that, so a
   * retry with another body still goes to the same place). The annotation stage answers.
   */
  | { kind: 'forward'; identity: string; annotationId: string; remember: TxnRecord | null };

export function identityOf(command: SendCommand): string {
  return transactionIdentity(command.scope_hash, command.room_id, command.type, command.txn_id);
}

/** Decides what one send command does, given what its partition remembers. Pure: no Kafka, no clock but `now`. */
export function decide(
  command: SendCommand,
  position: LogPosition,
  remembered: (identity: string) => TxnRecord | undefined,
  now: number,
): Decision {
  const identity = identityOf(command);
  const previous = remembered(identity);
  if (previous?.forwarded !== undefined)
    return { kind: 'forward', identity, annotationId: previous.forwarded, remember: null };
  if (previous) return { kind: 'duplicate', reply: replyFor(command.correlation_id, previous) };

  const annotation = annotationOf(command.content);
  if (annotation) {
    const annotationId = annotationIdentity(command.room_id, command.type, command.sender, annotation);
    return { kind: 'forward', identity, annotationId, remember: { forwarded: annotationId, ts: now } };
  }
  const event = eventOf(command, position);
  const remember: TxnRecord = { event_id: event.event_id, ts: now };
  return {
    kind: 'accepted',
    identity,
    event,
    remember,
    reply: replyFor(command.correlation_id, remember),
    redacts: redactedEventOf(command.type, command.content),
  };
}
