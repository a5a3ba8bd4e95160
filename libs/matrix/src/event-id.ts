import { canonicalJson, JsonObject } from './canonical-json';
import { sha256Base64Url } from './hash';

/** Where a command sits in the log: reprocessing the same record after a crash gives the same event ID. */
export interface LogPosition {
  topic: string;
  partition: number;
  offset: string;
}

export interface EventFields {
  room_id: string;
  sender: string;
  type: string;
  content: JsonObject;
  origin_server_ts: number;
}

/** Room v4+ event ID format: `$` + unpadded URL-safe base64 of a SHA-256 (43 characters). */
export const EVENT_ID_PATTERN = /^\$[A-Za-z0-9_-]{43}$/;

export function deriveEventId(position: LogPosition, event: EventFields): string {
  const input = canonicalJson({
    position: `${position.topic}/${position.partition}/${position.offset}`,
    room_id: event.room_id,
    sender: event.sender,
    type: event.type,
    content: event.content,
    origin_server_ts: event.origin_server_ts,
  });
  return `$${sha256Base64Url(input)}`;
}
