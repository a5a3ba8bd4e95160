import { SendCommand } from './send-command';
import { decodeTxnRecord, TxnRecord } from './txn-record';

/**
 * Records of `matrix.send.annotations`, keyed by annotation identity so that every annotation of one
 * (room, target, type, sender, key) meets the same processor, whatever partition its send command took.
 */
export type AnnotationStageRecord =
  /** An annotation to accept or reject as a duplicate; also a retry of one, which gets the remembered outcome. */
  | { kind: 'annotation'; annotation_id: string; txn_identity: string; command: SendCommand }
  /**
   * A redaction was accepted: if it names a held annotation, that annotation may be sent again. Sent to every
   * partition.
   */
  | { kind: 'redaction'; room_id: string; redacts: string };

/** A key of the annotation stage's changelog: what it is about, and whose. */
export type AnnotationStateKey = { kind: 'txn'; identity: string } | { kind: 'holder'; annotationId: string };

/** Changelog of the annotation stage (`matrix.send.annotations.state`). */
export const ANNOTATION_STATE_KEYS = {
  /** → TxnRecord: the outcome of one annotation transaction. */
  txn: (identity: string): string => `txn:${identity}`,
  /** → AnnotationHolder, or a tombstone once redacted. */
  holder: (annotationId: string): string => `ann:${annotationId}`,
  parse(key: string): AnnotationStateKey | null {
    if (key.startsWith('txn:')) return { kind: 'txn', identity: key.slice(4) };
    if (key.startsWith('ann:')) return { kind: 'holder', annotationId: key.slice(4) };
    return null;
  },
};

/** The accepted annotation that holds an annotation identity. */
export interface AnnotationHolder {
  event_id: string;
  /** Only a redaction in this room frees the annotation (holders written before it was recorded are never freed). */
  room_id?: string;
  /** Who sent it: held annotations count against their sender's share (absent in holders written before). */
  sender?: string;
  ts: number;
}

export type AnnotationStateValue = TxnRecord | AnnotationHolder;

export function decodeAnnotationStageRecord(value: Buffer | null): AnnotationStageRecord {
  const parsed = JSON.parse(value?.toString('utf8') ?? 'null') as AnnotationStageRecord | null;
  if (
    parsed?.kind === 'annotation' &&
    typeof parsed.annotation_id === 'string' &&
    typeof parsed.txn_identity === 'string' &&
    parsed.command
  ) {
    return parsed;
  }
  if (parsed?.kind === 'redaction' && typeof parsed.room_id === 'string' && typeof parsed.redacts === 'string')
    return parsed;
  throw new Error('not an annotation stage record');
}

/** A changelog record of the annotation stage as the stage keeps it; null for a tombstone or anything else. */
export function decodeAnnotationStateValue(key: string, value: Buffer | null): AnnotationStateValue | null {
  const parsed = ANNOTATION_STATE_KEYS.parse(key);
  if (parsed === null || value === null) return null;
  if (parsed.kind === 'txn') return decodeTxnRecord(value);
  try {
    const { event_id, room_id, sender, ts } = JSON.parse(value.toString('utf8')) as AnnotationHolder;
    if (typeof event_id !== 'string' || typeof ts !== 'number') return null;
    return {
      event_id,
      ...(typeof room_id === 'string' ? { room_id } : {}),
      ...(typeof sender === 'string' ? { sender } : {}),
      ts,
    };
  } catch {
    return null;
  }
}
