import { InputBatch } from '@app/kafka';
import {
  Context,
  contextOf,
  endSpan,
  linkTo,
  messagingAttributes,
  recordContext,
  Span,
  SpanKind,
  startSpan,
  tracingOn,
} from '@app/observability';

/** Links from one batch span to the traces of its records: enough to find them, bounded for a huge batch. */
const MAX_LINKS = 128;

/**
 * The spans of one batch of the exactly-once processor, when tracing is on: the batch and its Kafka transaction
 * (a trace of their own, linked to the sends they carry, since one batch serves many sends), and for each record
 * that carries a trace context (the gateway's `traceparent`) a `process` span in that send's trace, linked to the
 * batch and ending when the transaction commits. Its context goes on into the event's headers and the reply.
 */
export class BatchTrace {
  private readonly records: Span[] = [];
  private transactionSpan?: Span;

  private constructor(
    private readonly batchSpan: Span,
    private readonly contexts: (Context | undefined)[],
  ) {}

  /** Undefined when tracing is off: then nothing is extracted or started. */
  static start(batch: InputBatch): BatchTrace | undefined {
    if (!tracingOn()) return undefined;
    const contexts = batch.messages.map((message) => recordContext(message.headers));
    const links = contexts
      .filter((context): context is Context => context !== undefined)
      .slice(0, MAX_LINKS)
      .map(linkTo);
    const span = startSpan(`process ${batch.topic}`, SpanKind.CONSUMER, {
      links,
      attributes: {
        ...messagingAttributes(batch.topic, batch.partition),
        'messaging.batch.message_count': contexts.length,
      },
    })!;
    return new BatchTrace(span, contexts);
  }

  /** The `process` span of the batch's `index`th record, in its send's trace; undefined if it carries none. */
  record(index: number): Context | undefined {
    const parent = this.contexts[index];
    if (!parent) return undefined;
    const span = startSpan('process command', SpanKind.CONSUMER, {
      parent,
      links: [{ context: this.batchSpan.spanContext() }],
    })!;
    this.records.push(span);
    return contextOf(span);
  }

  /** The batch's records are decided: its Kafka transaction starts. */
  transaction(): void {
    this.transactionSpan = startSpan('kafka transaction', SpanKind.INTERNAL, { parent: contextOf(this.batchSpan) });
  }

  /** The transaction committed (no error) or was aborted. */
  end(error?: unknown): void {
    endSpan(this.transactionSpan, error);
    for (const span of this.records) endSpan(span, error);
    endSpan(this.batchSpan, error);
  }
}
