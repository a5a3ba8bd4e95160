import { KafkaMessage, Message, TopicMessages } from 'kafkajs';
import { EVENT_HEADERS, peekReplyAddress, RoomEvent, SendCommand, SendReply } from '@app/contracts';
import { Context, traceHeaders } from '@app/observability';
import { unprocessableReply } from './outcomes';

/** Sends a reply; `trace` is the context of the send it answers, when tracing is on. */
export type ReplySender = (to: string, reply: SendReply, trace?: Context) => void;

/**
 * The one collector of a batch's output: the records it writes (inside its transaction) and the replies it
 * answers (after the transaction commits).
 */
export class RecordCollector {
  private readonly byTopic = new Map<string, Message[]>();
  private readonly replies: { to: string; reply: SendReply; trace?: Context }[] = [];
  /** The trace context of the record being decided (tracing on, and the command carried one). */
  trace?: Context;

  constructor(
    private readonly deadLetterTopic: string,
    /** Where replies may go: a dead record naming another topic gets no reply. */
    private readonly replyTopicPrefix: string,
  ) {}

  add(topic: string, ...messages: Message[]): void {
    const list = this.byTopic.get(topic);
    if (list) list.push(...messages);
    else this.byTopic.set(topic, messages);
  }

  /** Appends an event to the event log, keyed by room so downstream readers see each room in order. */
  addEvent(topic: string, event: RoomEvent, command: SendCommand): void {
    this.add(topic, {
      key: event.room_id,
      value: JSON.stringify(event),
      headers: {
        [EVENT_HEADERS.txnId]: command.txn_id,
        [EVENT_HEADERS.scopeHash]: command.scope_hash,
        ...(command.device_id === null ? {} : { [EVENT_HEADERS.deviceId]: command.device_id }),
        // W3C traceparent: a reader of the event log continues the send's trace.
        ...(this.trace ? traceHeaders(this.trace) : {}),
      },
    });
  }

  reply(to: string, reply: SendReply): void {
    this.replies.push({ to, reply, trace: this.trace });
  }

  /**
   * Sets a record aside that cannot be processed, with the reason, so it never blocks its partition; its sender,
   * if the record says who that is, gets an error instead of waiting.
   */
  deadLetter(message: KafkaMessage, source: string, reason: string): void {
    this.add(this.deadLetterTopic, { key: message.key, value: message.value, headers: { reason, source } });
    const address = peekReplyAddress(message.value, this.replyTopicPrefix);
    if (address) {
      this.reply(address.reply_to, unprocessableReply(address.correlation_id));
    }
  }

  records(): TopicMessages[] {
    return [...this.byTopic].map(([topic, messages]) => ({ topic, messages }));
  }

  sendReplies(send: ReplySender): void {
    for (const { to, reply, trace } of this.replies) send(to, reply, trace);
  }
}
