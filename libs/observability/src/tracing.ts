import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import {
  Context,
  Link,
  propagation,
  ROOT_CONTEXT,
  Span,
  SpanKind,
  SpanStatusCode,
  trace,
  Tracer,
} from '@opentelemetry/api';
import type { NodeSDK } from '@opentelemetry/sdk-node';
import type { IncomingMessage } from 'node:http';

/**
 * OpenTelemetry tracing, configured by the standard OTEL_* variables and off unless one of them asks for traces:
 * then the SDK (@opentelemetry/sdk-node, with the HTTP instrumentation) is loaded and started; otherwise nothing
 * is loaded and every helper below returns at once, so tracing costs nothing when off.
 */
let sdk: NodeSDK | undefined;
let tracer: Tracer | undefined;

/** Whether the environment asks for traces (OpenTelemetry's own variables; OTEL_SDK_DISABLED wins). */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporter = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase();
  if (exporter !== undefined && exporter !== '') return exporter !== 'none';
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/**
 * Starts the SDK when the environment asks for traces. Call it first in an app's main, before http and kafkajs
 * are loaded. `service` is the default of OTEL_SERVICE_NAME.
 */
export function startTracing(service: string): void {
  if (sdk || !tracingRequested()) return;
  process.env.OTEL_SERVICE_NAME ||= service;
  /* eslint-disable @typescript-eslint/no-require-imports -- loaded only when tracing is on */
  const { NodeSDK } = require('@opentelemetry/sdk-node') as typeof import('@opentelemetry/sdk-node');
  const { HttpInstrumentation } =
    require('@opentelemetry/instrumentation-http') as typeof import('@opentelemetry/instrumentation-http');
  /* eslint-enable @typescript-eslint/no-require-imports */
  sdk = new NodeSDK({
    // The HTTP server span of each request; probes and scrapes are not worth a trace each.
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (req: IncomingMessage) => /^\/(health|metrics)\b/.test(req.url ?? ''),
        ignoreOutgoingRequestHook: () => true,
      }),
    ],
  });
  sdk.start();
  tracer = trace.getTracer('matrix-send');
}

/** Sends what is still buffered and stops the SDK: on shutdown, so the last spans are not lost. */
@Injectable()
export class TracingShutdown implements OnApplicationShutdown {
  async onApplicationShutdown(): Promise<void> {
    await sdk?.shutdown().catch(() => undefined);
  }
}

/** Kafka record headers as kafkajs reads them (Buffers) or writes them (strings). */
type RecordHeaders = Record<string, Buffer | string | (Buffer | string)[] | undefined>;

const headerGetter = {
  keys: (headers: RecordHeaders) => Object.keys(headers),
  get: (headers: RecordHeaders, key: string) => {
    const value = headers[key];
    const first = Array.isArray(value) ? value[0] : value;
    return first === undefined ? undefined : first.toString();
  },
};

/** Whether tracing was started. */
export function tracingOn(): boolean {
  return tracer !== undefined;
}

/** A link to the span that `context` holds (a record's sender), for a span that serves many. */
export function linkTo(context: Context): Link {
  return { context: trace.getSpanContext(context)! };
}

/** Starts a span (a child of `parent`, the active context by default); undefined when tracing is off. */
export function startSpan(
  name: string,
  kind: SpanKind,
  options: { parent?: Context; links?: Link[]; attributes?: Record<string, string | number> } = {},
): Span | undefined {
  return tracer?.startSpan(name, { kind, links: options.links, attributes: options.attributes }, options.parent);
}

/** The OpenTelemetry semantic-convention attributes of a Kafka record span. */
export function messagingAttributes(topic: string, partition?: number): Record<string, string | number> {
  return {
    'messaging.system': 'kafka',
    'messaging.destination.name': topic,
    ...(partition === undefined ? {} : { 'messaging.destination.partition.id': String(partition) }),
  };
}

/** Ends a span, marked failed when `error` is given. */
export function endSpan(span: Span | undefined, error?: unknown): void {
  if (!span) return;
  if (error !== undefined) {
    const failure = error instanceof Error ? error : new Error(JSON.stringify(error));
    span.recordException(failure);
    span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
  }
  span.end();
}

/** The W3C trace context of `span` (or of a context) as Kafka record headers (`traceparent`, `tracestate`). */
export function traceHeaders(parent: Span | Context | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  if (parent) propagation.inject('spanContext' in parent ? trace.setSpan(ROOT_CONTEXT, parent) : parent, headers);
  return headers;
}

/** The trace context a record's headers carry; undefined when tracing is off or the record carries none. */
export function recordContext(headers: RecordHeaders | undefined): Context | undefined {
  if (!tracer || !headers) return undefined;
  const extracted = propagation.extract(ROOT_CONTEXT, headers, headerGetter);
  return trace.getSpanContext(extracted) ? extracted : undefined;
}

/** The context in which `span` is the parent. */
export function contextOf(span: Span): Context {
  return trace.setSpan(ROOT_CONTEXT, span);
}

export { SpanKind };
export type { Context, Span };
