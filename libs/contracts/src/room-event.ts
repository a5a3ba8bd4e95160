import { EventFields } from '@app/matrix';

/**
 * A record of the event log (`matrix.room.events`), keyed by room_id. Public: downstream readers consume it.
 * The value is the event in the client format; the sender's txnId and device travel as headers.
 */
export interface RoomEvent extends EventFields {
  event_id: string;
}

export const EVENT_HEADERS = {
  txnId: 'matrix.txn_id',
  deviceId: 'matrix.device_id',
  scopeHash: 'matrix.scope_hash',
} as const;
