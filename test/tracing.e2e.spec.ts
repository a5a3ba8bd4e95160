import assert from 'node:assert/strict';
import { createServer, Server } from 'node:http';
import { describe, it } from 'node:test';
import { readEventLog } from './support/event-log';
import { sendEvent } from './support/matrix-client';
import { AppProcess, freePort, isolatedEnv, TEST_USERS } from './support/pipeline';

/** A span as OTLP/HTTP JSON carries it (ids in hex), with the service that sent it. */
interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  links?: { traceId: string; spanId: string }[];
}

const SPAN_KIND = { INTERNAL: 1, SERVER: 2, PRODUCER: 4, CONSUMER: 5 };

interface OtlpTraces {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
    scopeSpans?: { spans?: Omit<ReceivedSpan, 'service'>[] }[];
  }[];
}

/** An OTLP/HTTP receiver of the test's own (JSON encoding): keeps every span it is sent. */
async function otlpReceiver(): Promise<{ url: string; spans: ReceivedSpan[]; close(): Promise<void> }> {
  const spans: ReceivedSpan[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpTraces;
        for (const { resource, scopeSpans } of body.resourceSpans ?? []) {
          const service =
            resource?.attributes?.find(({ key }) => key === 'service.name')?.value.stringValue ?? '(unnamed)';
          for (const scope of scopeSpans ?? []) for (const span of scope.spans ?? []) spans.push({ service, ...span });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function until<T>(what: string, find: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('tracing (OpenTelemetry)', () => {
  it('gives one send one trace, with spans from the gateway and the consumer, and the trace context in the command and the event', async () => {
    const receiver = await otlpReceiver();
    const env = isolatedEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_LOGS_EXPORTER: 'none',
    });
    const consumer = await AppProcess.start('consumer', env);
    const gateway = await AppProcess.start('gateway', env);
    try {
      const res = await sendEvent(gateway.url, TEST_USERS.alice.token, '!traced:test.local', 'm.room.message', 't1', {
        msgtype: 'm.text',
        body: 'followed',
      });
      assert.equal(res.status, 200);
      const eventId = String(res.body.event_id);

      const server = await until('the gateway’s HTTP span', () =>
        receiver.spans.find((s) => s.service === 'matrix-send-gateway' && s.kind === SPAN_KIND.SERVER),
      );
      const inTrace = () => receiver.spans.filter((s) => s.traceId === server.traceId);
      const reply = await until('the consumer’s reply span', () =>
        inTrace().find((s) => s.service === 'matrix-send-consumer' && s.name === 'publish reply'),
      );
      const spans = inTrace();
      const byId = new Map(spans.map((s) => [s.spanId, s]));
      const publish = spans.find((s) => s.name === `publish ${env.KAFKA_TOPIC_COMMANDS}`);
      assert.ok(publish, 'the command’s produce has a span in the trace');
      assert.equal(publish.kind, SPAN_KIND.PRODUCER);
      assert.equal(publish.service, 'matrix-send-gateway');
      const processed = spans.find((s) => s.name === 'process command');
      assert.ok(processed, 'the consumer’s processing of the command is in the same trace');
      assert.equal(processed.service, 'matrix-send-consumer');
      assert.equal(processed.parentSpanId, publish.spanId, 'continued from the command’s traceparent header');
      assert.equal(reply.parentSpanId, processed.spanId, 'the reply is sent from the processing of its command');
      // Every span of the trace hangs off the HTTP request's span.
      for (const span of spans) {
        let at: ReceivedSpan | undefined = span;
        while (at?.parentSpanId) at = byId.get(at.parentSpanId);
        assert.equal(at?.spanId, server.spanId, `${span.name} is under the HTTP request's span`);
      }
      assert.deepEqual(new Set(spans.map((s) => s.service)), new Set(['matrix-send-gateway', 'matrix-send-consumer']));

      // The batch and its Kafka transaction: spans of their own (one batch serves many sends), linked to.
      const batch = receiver.spans.find((s) => s.spanId === processed.links?.[0]?.spanId);
      assert.ok(batch, 'the processing links to its batch’s span');
      assert.equal(batch.name, `process ${env.KAFKA_TOPIC_COMMANDS}`);
      assert.ok(
        batch.links?.some((link) => link.spanId === publish.spanId),
        'the batch links to the commands it carried',
      );
      const transaction = await until('the transaction span', () =>
        receiver.spans.find((s) => s.name === 'kafka transaction' && s.parentSpanId === batch.spanId),
      );
      assert.equal(transaction.service, 'matrix-send-consumer');

      // A reader of the event log continues the trace from the event's headers.
      const [logged] = (await readEventLog(env.KAFKA_BROKERS, env.KAFKA_TOPIC_EVENTS)).filter(
        (e) => e.event.event_id === eventId,
      );
      const traceparent = logged.headers.traceparent;
      assert.match(traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, 'a W3C traceparent header');
      assert.equal(traceparent.split('-')[1], server.traceId);
      assert.equal(traceparent.split('-')[2], processed.spanId);
    } finally {
      await Promise.all([gateway.stop(), consumer.stop()]);
      await receiver.close();
    }
  });

  it('is off unless configured: no trace context reaches the event log', async () => {
    const env = isolatedEnv();
    const consumer = await AppProcess.start('consumer', env);
    const gateway = await AppProcess.start('gateway', env);
    try {
      const res = await sendEvent(gateway.url, TEST_USERS.bob.token, '!untraced:test.local', 'm.room.message', 'u1', {
        msgtype: 'm.text',
        body: 'not followed',
      });
      assert.equal(res.status, 200);
      const [logged] = await readEventLog(env.KAFKA_BROKERS, env.KAFKA_TOPIC_EVENTS);
      assert.equal(logged.event.event_id, res.body.event_id);
      assert.equal(logged.headers.traceparent, undefined);
      assert.ok(logged.headers['matrix.txn_id'], 'the headers were read');
    } finally {
      await Promise.all([gateway.stop(), consumer.stop()]);
    }
  });
});
