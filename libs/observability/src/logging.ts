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
 * Nest's logging through pino. No line per request (the hot path stays quiet); each request gets an id, which
 * the gateway also uses as the command's correlation id, so one failure can be followed across processes.
 */
export function loggingModule(logger: Logger): DynamicModule {
  return LoggerModule.forRoot({
    pinoHttp: {
      logger,
      autoLogging: false,
      quietReqLogger: true,
      genReqId: (req: IncomingMessage) => (req as IncomingMessage & { id?: string }).id ?? randomUUID(),
      serializers: { req: (req: { id?: unknown; method?: unknown }) => ({ id: req.id, method: req.method }) },
    },
  });
}
