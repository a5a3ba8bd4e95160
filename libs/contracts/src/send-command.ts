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

/**
 * Whether a command's `reply_to` is a gateway's reply topic: a legal Kafka topic name under the configured prefix
 * (KAFKA_REPLY_TOPIC_PREFIX). Anything else would let whatever writes commands make the consumer write replies
 * into any topic, the event log included.
 */
export function isReplyTopic(topic: string, replyTopicPrefix: string): boolean {
  return topic.length > replyTopicPrefix.length && topic.startsWith(replyTopicPrefix) && /^[\w.-]{1,249}$/.test(topic);
}

/**
 * Decodes a command record defensively: a record the consumer cannot trust goes to the dead-letter topic, with
 * the message of the UndecodableCommand as its reason. `replyTopicPrefix` bounds where its reply may go.
 */
export function decodeSendCommand(value: Buffer | null, replyTopicPrefix: string): SendCommand {
  if (value === null) throw new UndecodableCommand('empty record');
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch {
    throw new UndecodableCommand('not JSON');
  }
  return checkSendCommand(parsed, replyTopicPrefix);
}

/** The checks of decodeSendCommand on a parsed value, for records that carry a command (annotation stage). */
export function checkSendCommand(parsed: unknown, replyTopicPrefix: string): SendCommand {
  if (!isObject(parsed)) throw new UndecodableCommand('not an object');
  if (parsed.v !== SEND_COMMAND_VERSION) throw new UndecodableCommand(`unknown version ${String(parsed.v)}`);
  for (const field of ['room_id', 'type', 'txn_id', 'scope_hash', 'sender', 'correlation_id', 'reply_to'] as const) {
    if (typeof parsed[field] !== 'string' || parsed[field] === '') throw new UndecodableCommand(`missing ${field}`);
  }
  if (parsed.device_id !== null && typeof parsed.device_id !== 'string') throw new UndecodableCommand('bad device_id');
  if (!isObject(parsed.content)) throw new UndecodableCommand('content is not an object');
  if (!Number.isSafeInteger(parsed.origin_server_ts)) throw new UndecodableCommand('bad origin_server_ts');
  if (!isReplyTopic(parsed.reply_to as string, replyTopicPrefix))
    throw new UndecodableCommand('reply_to outside KAFKA_REPLY_TOPIC_PREFIX');
  return parsed as unknown as SendCommand;
}

/**
 * Reads just enough of a record to answer its sender, when the rest of it cannot be decoded; null when it says
 * no one, or a reply topic outside `replyTopicPrefix`.
 */
export function peekReplyAddress(
  value: Buffer | null,
  replyTopicPrefix: string,
): { correlation_id: string; reply_to: string } | null {
  try {
    const parsed: unknown = JSON.parse(value?.toString('utf8') ?? 'null');
    if (
      isObject(parsed) &&
      typeof parsed.correlation_id === 'string' &&
      typeof parsed.reply_to === 'string' &&
      isReplyTopic(parsed.reply_to, replyTopicPrefix)
    ) {
      return { correlation_id: parsed.correlation_id, reply_to: parsed.reply_to };
    }
  } catch {
    // nothing to answer
  }
  return null;
}
