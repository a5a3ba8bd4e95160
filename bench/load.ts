import autocannon from 'autocannon';
import { EVENT_ID_PATTERN } from '@app/matrix';

export interface LoadOptions {
  url: string;
  tokens: string[];
  connections: number;
  durationSeconds: number;
  /** Share of requests that repeat an earlier, answered transaction (0..1); each is checked for the same event_id. */
  retryShare?: number;
  /** Requests per second for the whole run (fixed-rate scenarios). */
  overallRate?: number;
}

export interface LoadResult {
  requests: number;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  non2xx: number;
  /** 200s without an event ID of the room v4 form. */
  bad_answers: number;
  retries: number;
  /** Retries whose event_id differed from the first answer. */
  retry_mismatches: number;
  errors: number;
  timeouts: number;
}

interface Answered {
  path: string;
  token: string;
  eventId: string;
}

/** autocannon keeps one context per connection; requests on a connection go one at a time. */
interface RequestContext {
  expect?: string;
  sent?: { path: string; token: string };
}

let run = 0;

/**
 * One autocannon run against the send endpoint: every request a fresh txnId (or, for `retryShare`, an earlier
 * one), realistic paths and bodies, tokens in rotation, and every answer checked.
 */
export async function sendLoad(options: LoadOptions): Promise<LoadResult> {
  const prefix = `b${Date.now().toString(36)}${run++}`;
  const answered: Answered[] = [];
  let counter = 0;
  let badAnswers = 0;
  let retries = 0;
  let mismatches = 0;
  const body = JSON.stringify({
    msgtype: 'm.text',
    body: 'The quick brown fox jumps over the lazy dog, benchmark edition.',
  });

  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationSeconds,
    overallRate: options.overallRate,
    timeout: 10,
    requests: [
      {
        method: 'PUT',
        setupRequest: (request, ctx: object) => {
          const context = ctx as RequestContext;
          const n = counter++;
          const retry = options.retryShare && answered.length > 100 && n % Math.round(1 / options.retryShare) === 0;
          if (retry) {
            const earlier = answered[Math.floor(Math.random() * answered.length)];
            context.expect = earlier.eventId;
            context.sent = earlier;
            return {
              ...request,
              path: earlier.path,
              headers: { ...request.headers, authorization: `Bearer ${earlier.token}` },
              body,
            };
          }
          const token = options.tokens[n % options.tokens.length];
          const path = `/_matrix/client/v3/rooms/${encodeURIComponent(`!bench${n % 50}:bench.local`)}/send/m.room.message/${prefix}-${n}`;
          context.expect = undefined;
          context.sent = { path, token };
          return {
            ...request,
            path,
            headers: { ...request.headers, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body,
          };
        },
        onResponse: (status, responseBody, ctx: object) => {
          const context = ctx as RequestContext;
          if (status !== 200) return;
          let eventId: unknown;
          try {
            eventId = (JSON.parse(responseBody) as { event_id?: unknown }).event_id;
          } catch {
            eventId = undefined;
          }
          if (typeof eventId !== 'string' || !EVENT_ID_PATTERN.test(eventId)) {
            badAnswers++;
            return;
          }
          if (context.expect !== undefined) {
            retries++;
            if (eventId !== context.expect) mismatches++;
          } else if (options.retryShare && answered.length < 20000) {
            answered.push({ ...context.sent!, eventId });
          }
        },
      },
    ],
  });
  return {
    requests: result.requests.total,
    rps: Math.round(result.requests.average),
    p50_ms: result.latency.p50,
    p90_ms: result.latency.p90,
    p99_ms: result.latency.p99,
    max_ms: result.latency.max,
    non2xx: result.non2xx,
    bad_answers: badAnswers,
    retries,
    retry_mismatches: mismatches,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}
