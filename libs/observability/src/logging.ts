import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { DynamicModule } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import pino, { Logger } from 'pino';

/**
 * Where a token or message content could hide in a log object; they are censored even if a log call passes
 * the request by mistake.
 */
const REDACT = [
  'req.headers.authorization',
  'req.query.access_token',
  'req.url',
  'req.body',
  'content',
  'body',
  'token',
  'access_token',
  'as_token',
];

/**
 * Characters that would let a value forge or hide log text: C0 and C1 controls and DEL (line breaks, terminal
 * escapes), Unicode line separators, and bidirectional overrides. Identifiers may hold them (room ID localparts,
 * event types, transaction IDs, historical user IDs: spec appendices), so a message that names one stays one line.
 */
// eslint-disable-next-line no-control-regex -- control characters are exactly what is escaped
const UNSAFE_IN_LOGS = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` with every character of UNSAFE_IN_LOGS written as an escape: `\xHH` / `\uHHHH` for a log line, or always
 * `\uHHHH` for JSON text (valid inside its strings, the only place JSON.stringify leaves such characters raw).
 */
export function escapeControlCharacters(text: string, style: 'log' | 'json' = 'log'): string {
  return text.replace(UNSAFE_IN_LOGS, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 && style === 'log'
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * A log call's argument with its text escaped: a string, or the string fields of a plain object (copied only when
 * one needs it, so that objects pino serializes by their class keep it). Errors keep their own serializer.
 */
function escapeLogArgument(arg: unknown): unknown {
  if (typeof arg === 'string') return escapeControlCharacters(arg);
  if (arg === null || typeof arg !== 'object' || Array.isArray(arg) || arg instanceof Error) return arg;
  const entries = Object.entries(arg);
  const unsafe = (v: unknown): boolean => typeof v === 'string' && escapeControlCharacters(v) !== v;
  if (!entries.some(([, v]) => unsafe(v))) return arg;
  return Object.fromEntries(entries.map(([k, v]) => [k, typeof v === 'string' ? escapeControlCharacters(v) : v]));
}

/**
 * Structured JSON logs (pretty for a terminal with LOG_FORMAT=pretty), at LOG_LEVEL. The text of every line, and
 * the string fields of its objects, has its control characters escaped (escapeControlCharacters), whatever the
 * format: JSON would escape only C0, and the pretty format none.
 */
export function createLogger(
  app: string,
  level: string,
  format: string,
  /** Where JSON lines go (standard output unless given); the pretty format always writes to a terminal. */
  destination?: pino.DestinationStream,
): Logger {
  return pino(
    {
      level,
      base: { app },
      redact: { paths: REDACT, censor: '[redacted]' },
      hooks: {
        logMethod(args, method) {
          const escaped = args.map(escapeLogArgument);
          return method.apply(this, escaped as Parameters<typeof method>);
        },
      },
      ...(format === 'pretty'
        ? { transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname' } } }
        : {}),
    },
    ...(format === 'pretty' || !destination ? [] : [destination]),
  );
}

/**
 * Nest's logging through pino. No line per request (the hot path stays quiet), and no logger per request either:
 * pino-http's two child loggers per request cost a tenth of the gateway's time at saturation. A request gets an id
 * from `assignRequestIds`; failure lines name it, and the gateway uses it as the command's correlation id.
 */
export function loggingModule(logger: Logger): DynamicModule {
  // useExisting: nestjs-pino mounts no pino-http middleware; logs go to this logger, in a request or not.
  return LoggerModule.forRoot({ pinoHttp: { logger }, useExisting: true });
}

/** Gives each request an id (`req.id`): the correlation id of its command, named by the lines about it. */
export function assignRequestIds(req: IncomingMessage & { id?: unknown }, _res: unknown, next: () => void): void {
  req.id ??= randomUUID();
  next();
}
