import { RoomEvent, SendCommand, SendReply, TxnRecord } from '@app/contracts';
import { annotationIdentity, annotationOf, deriveEventId, LogPosition, redactedEventOf, transactionIdentity } from '@app/matrix';

export type Decision =
  /** A new transaction: append the event, remember the outcome, answer with the new event ID. */
  | { kind: 'accepted'; identity: string; event: RoomEvent; remember: TxnRecord; reply: SendReply; redacts: string | null }
  /** A transaction seen before (a retry, or a concurrent duplicate): answer with the remembered outcome. */
  | { kind: 'duplicate'; identity: string; reply: SendReply }
  /**
   * An annotation, whose uniqueness only the annotation stage can judge: hand it over (and remember that, so a
   * retry with another body still goes to the same place). The annotation stage answers.
   */
  | { kind: 'forward'; identity: string; annotationId: string; remember: TxnRecord | null };

/**
 * A command published longer ago than the dedup window may be a retry of a transaction already forgotten: it can
 * no longer be deduplicated, so it is never appended (it is dead-lettered as `expired`).
 */
export function isPastWindow(publishedAtMs: number, now: number, windowMs: number): boolean {
  return publishedAtMs <= now - windowMs;
}

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
  if (previous?.forwarded !== undefined) return { kind: 'forward', identity, annotationId: previous.forwarded, remember: null };
  if (previous) return { kind: 'duplicate', identity, reply: replyFor(command.correlation_id, previous) };

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

/** The event a command becomes, its ID derived from where the command sits in the log. */
export function eventOf(command: SendCommand, position: LogPosition): RoomEvent {
  const fields = {
    room_id: command.room_id,
    sender: command.sender,
    type: command.type,
    content: command.content,
    origin_server_ts: command.origin_server_ts,
  };
  return { event_id: deriveEventId(position, fields), ...fields };
}

export function replyFor(correlationId: string, outcome: TxnRecord): SendReply {
  if (outcome.event_id !== undefined) return { correlation_id: correlationId, status: 200, body: { event_id: outcome.event_id } };
  const error = outcome.error ?? { status: 500, errcode: 'M_UNKNOWN', error: 'Unknown outcome' };
  return {
    correlation_id: correlationId,
    status: error.status,
    body: { errcode: error.errcode as 'M_UNKNOWN', error: error.error },
  };
}
