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

/** Structured JSON logs (pretty for a terminal with LOG_FORMAT=pretty), at LOG_LEVEL. */
export function createLogger(app: string, level: string, format: string): Logger {
  return pino({
    level,
    base: { app },
    redact: { paths: REDACT, censor: '[redacted]' },
    ...(format === 'pretty'
      ? { transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname' } } }
      : {}),
  });
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
