import { IHeaders, Message, TopicMessages } from 'kafkajs';

/** Framing a record costs beyond its key, value and headers (lengths, offsets, timestamp), rounded up. */
const RECORD_OVERHEAD_BYTES = 32;

const length = (data: Buffer | string | null | undefined): number =>
  data === null || data === undefined ? 0 : typeof data === 'string' ? Buffer.byteLength(data) : data.length;

function headerBytes(headers: IHeaders | undefined): number {
  let total = 0;
  for (const [key, value] of Object.entries(headers ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) total += Buffer.byteLength(key) + length(item) + 8;
  }
  return total;
}

/** What a record adds to a produce request, a little over rather than under. */
export function recordBytes(message: Message): number {
  return RECORD_OVERHEAD_BYTES + length(message.key) + length(message.value) + headerBytes(message.headers);
}

/**
 * Splits a transaction's output into produce requests of at most `maxBytes` each (a record larger than that goes
 * alone), keeping each topic-partition's records in order. The broker refuses a record batch over
 * `message.max.bytes`, and a batch that always fails would block its input partition forever.
 */
export function chunkByBytes(output: TopicMessages[], maxBytes: number): TopicMessages[][] {
  const chunks: TopicMessages[][] = [];
  let chunk = new Map<string, Message[]>();
  let bytes = 0;
  for (const { topic, messages } of output) {
    for (const message of messages) {
      const size = recordBytes(message);
      if (bytes > 0 && bytes + size > maxBytes) {
        chunks.push(toTopicMessages(chunk));
        chunk = new Map();
        bytes = 0;
      }
      const list = chunk.get(topic);
      if (list) list.push(message);
      else chunk.set(topic, [message]);
      bytes += size;
    }
  }
  if (bytes > 0) chunks.push(toTopicMessages(chunk));
  return chunks;
}

const toTopicMessages = (chunk: Map<string, Message[]>): TopicMessages[] =>
  [...chunk].map(([topic, messages]) => ({ topic, messages }));
