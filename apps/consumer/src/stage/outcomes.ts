import { RoomEvent, SendCommand, SendReply, TxnRecord } from '@app/contracts';
import { deriveEventId, LogPosition } from '@app/matrix';

// What the stages' decisions become: the event a command is appended as, and the replies its sender gets.

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
  if (outcome.event_id !== undefined)
    return { correlation_id: correlationId, status: 200, body: { event_id: outcome.event_id } };
  const error = outcome.error ?? { status: 500, errcode: 'M_UNKNOWN', error: 'Unknown outcome' };
  return {
    correlation_id: correlationId,
    status: error.status,
    body: { errcode: error.errcode as 'M_UNKNOWN', error: error.error },
  };
}

/** The answer to a command refused because the budget is spent: the client retries later with the same txnId. */
export const stateFullReply = (correlationId: string): SendReply => ({
  correlation_id: correlationId,
  status: 503,
  body: {
    errcode: 'M_UNKNOWN',
    error: 'The server remembers too many transactions right now; retry with the same transaction ID',
  },
});

/** The answer to a record that could not be processed (dead-lettered), when it says who sent it. */
export const unprocessableReply = (correlationId: string): SendReply => ({
  correlation_id: correlationId,
  status: 500,
  body: { errcode: 'M_UNKNOWN', error: 'The server could not process this event' },
});
