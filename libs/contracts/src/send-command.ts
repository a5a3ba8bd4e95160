import { JsonObject } from '@app/matrix';

export const SEND_COMMAND_VERSION = 1;

/**
 * What the gateway asks the consumer to do. Carries the hashed scope, never a token.
 * Keyed in Kafka by `commandKey(scopeHash, txnId)` so every retry lands on the same partition.
 */
export interface SendCommand {
  v: typeof SEND_COMMAND_VERSION;
  room_id: string;
  type: string;
  txn_id: string;
  scope_hash: string;
  sender: string;
  device_id: string | null;
  content: JsonObject;
  origin_server_ts: number;
  correlation_id: string;
  /** The topic of the gateway instance awaiting the reply. */
  reply_to: string;
}

export function commandKey(scopeHash: string, txnId: string): string {
  return `${scopeHash}:${txnId}`;
}

export class UndecodableCommand extends Error {}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Decodes a command record defensively: a record the consumer cannot trust goes to the dead-letter topic. */
export function decodeSendCommand(value: Buffer | null): SendCommand {
  if (value === null) throw new UndecodableCommand('empty record');
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch {
    throw new UndecodableCommand('not JSON');
  }
  if (!isObject(parsed)) throw new UndecodableCommand('not an object');
  if (parsed.v !== SEND_COMMAND_VERSION) throw new UndecodableCommand(`unknown version ${String(parsed.v)}`);
  for (const field of ['room_id', 'type', 'txn_id', 'scope_hash', 'sender', 'correlation_id', 'reply_to'] as const) {
    if (typeof parsed[field] !== 'string' || parsed[field] === '') throw new UndecodableCommand(`missing ${field}`);
  }
  if (parsed.device_id !== null && typeof parsed.device_id !== 'string') throw new UndecodableCommand('bad device_id');
  if (!isObject(parsed.content)) throw new UndecodableCommand('content is not an object');
  if (!Number.isSafeInteger(parsed.origin_server_ts)) throw new UndecodableCommand('bad origin_server_ts');
  return parsed as unknown as SendCommand;
}

/** Reads just enough of a record to answer its sender, when the rest of it cannot be decoded. */
export function peekReplyAddress(value: Buffer | null): { correlation_id: string; reply_to: string } | null {
  try {
    const parsed: unknown = JSON.parse(value?.toString('utf8') ?? 'null');
    if (isObject(parsed) && typeof parsed.correlation_id === 'string' && typeof parsed.reply_to === 'string') {
      return { correlation_id: parsed.correlation_id, reply_to: parsed.reply_to };
    }
  } catch {
    // nothing to answer
  }
  return null;
}
