import { checkSendCommand, SendCommand, UndecodableCommand } from './send-command';
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

/**
 * Decodes a record of the annotation stage as strictly as a command (its command is checked as decodeSendCommand
 * checks one): a record it cannot trust throws an UndecodableCommand, whose message is the dead letter's reason.
 */
export function decodeAnnotationStageRecord(value: Buffer | null, replyTopicPrefix: string): AnnotationStageRecord {
  if (value === null) throw new UndecodableCommand('empty record');
  let parsed: Record<string, unknown> | null;
  try {
    parsed = JSON.parse(value.toString('utf8')) as Record<string, unknown> | null;
  } catch {
    throw new UndecodableCommand('not JSON');
  }
  const nonEmpty = (field: string): string => {
    const text = parsed?.[field];
    if (typeof text !== 'string' || text === '') throw new UndecodableCommand(`missing ${field}`);
    return text;
  };
  if (parsed?.kind === 'annotation') {
    const [annotation_id, txn_identity] = [nonEmpty('annotation_id'), nonEmpty('txn_identity')];
    let command: SendCommand;
    try {
      command = checkSendCommand(parsed.command, replyTopicPrefix);
    } catch (error) {
      throw new UndecodableCommand(`command: ${(error as Error).message}`);
    }
    return { kind: 'annotation', annotation_id, txn_identity, command };
  }
  if (parsed?.kind === 'redaction')
    return { kind: 'redaction', room_id: nonEmpty('room_id'), redacts: nonEmpty('redacts') };
  throw new UndecodableCommand('not an annotation stage record');
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
