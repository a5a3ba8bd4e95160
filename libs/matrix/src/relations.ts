import { isJsonObject, JsonObject } from './canonical-json';
import { shortHash } from './hash';

/** An annotation (spec: "Event annotations and reactions"): a relation of rel_type m.annotation with a key. */
export interface Annotation {
  target: string;
  key: string;
}

export function annotationOf(content: JsonObject): Annotation | null {
  const relation = content['m.relates_to'];
  if (!isJsonObject(relation) || relation.rel_type !== 'm.annotation') return null;
  const { event_id: target, key } = relation;
  return typeof target === 'string' && typeof key === 'string' ? { target, key } : null;
}

/**
 * What makes two annotations duplicates: the same sender annotating the same event with the same event type and
 * key (spec: "Avoiding duplicate annotations"; Synapse compares the event type too).
 */
export function annotationIdentity(roomId: string, eventType: string, sender: string, annotation: Annotation): string {
  return shortHash(JSON.stringify([roomId, annotation.target, eventType, sender, annotation.key]));
}

/** The event a redaction sent through the send endpoint names (room v11 puts `redacts` in the content). */
export function redactedEventOf(eventType: string, content: JsonObject): string | null {
  if (eventType !== 'm.room.redaction') return null;
  return typeof content.redacts === 'string' ? content.redacts : null;
}
