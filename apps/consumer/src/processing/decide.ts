import { RoomEvent, SendCommand, SendReply, TxnRecord } from '@app/contracts';
import { deriveEventId, LogPosition, transactionIdentity } from '@app/matrix';

export type Decision =
  /** A new transaction: append the event, remember the outcome, answer with the new event ID. */
  | { kind: 'accepted'; identity: string; event: RoomEvent; remember: TxnRecord; reply: SendReply }
  /** A transaction seen before (a retry, or a concurrent duplicate): answer with the remembered outcome. */
  | { kind: 'duplicate'; identity: string; reply: SendReply };

export function identityOf(command: SendCommand): string {
  return transactionIdentity(command.scope_hash, command.room_id, command.type, command.txn_id);
}

/** Decides what one command does, given what the partition remembers. Pure: no Kafka, no clock but `now`. */
export function decide(
  command: SendCommand,
  position: LogPosition,
  remembered: (identity: string) => TxnRecord | undefined,
  now: number,
): Decision {
  const identity = identityOf(command);
  const previous = remembered(identity);
  if (previous) return { kind: 'duplicate', identity, reply: replyFor(command.correlation_id, previous) };

  const fields = {
    room_id: command.room_id,
    sender: command.sender,
    type: command.type,
    content: command.content,
    origin_server_ts: command.origin_server_ts,
  };
  const event: RoomEvent = { event_id: deriveEventId(position, fields), ...fields };
  const remember: TxnRecord = { event_id: event.event_id, ts: now };
  return { kind: 'accepted', identity, event, remember, reply: replyFor(command.correlation_id, remember) };
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
