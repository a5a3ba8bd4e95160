import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { AppConfig } from '@app/config';
import { MatrixError, unrecognized } from '@app/matrix';
import { closeIfBodyWouldBeCostly } from './request-body';

/**
 * Every error leaves as a Matrix standard error in JSON: never an HTML page or a stack trace. Unexpected errors
 * are logged once, without the request (which may hold a token or message content).
 */
@Catch()
export class MatrixExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('http');

  constructor(private readonly config: AppConfig) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const req = host.switchToHttp().getRequest<Request & { id?: unknown }>();
    const error = this.toMatrixError(exception);
    res.locals.errcode = error.errcode;
    // One line per failure, with the request's correlation id; never the request itself (tokens, content).
    const line = `${req.method} answered ${error.status} ${error.errcode}: ${error.logText ?? error.message} (correlation id ${typeof req.id === 'string' ? req.id : 'none'})`;
    if (req.path.startsWith('/health/')) {
      // a probe's answer, not a failure
    } else if (error.status >= 500) this.logger.warn(line);
    else this.logger.debug(line);
    if (res.headersSent) return;
    closeIfBodyWouldBeCostly(req, res, this.config.MAX_BODY_BYTES);
    if (error.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(error.retryAfterSeconds));
    res.status(error.status).json(error.toBody());
  }

  private toMatrixError(exception: unknown): MatrixError {
    if (exception instanceof MatrixError) return exception;
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      if (status === 404) return unrecognized(404);
      if (status === 405) return unrecognized(405);
      if (status === 413) return new MatrixError(413, 'M_TOO_LARGE', 'Request too large');
      // The router's own 400: a path segment that is not valid percent-encoding. Its text is not echoed.
      if (status === 400) return new MatrixError(400, 'M_INVALID_PARAM', 'Bad request path');
      if (status < 500) return new MatrixError(status, 'M_UNKNOWN', 'Bad request');
      return new MatrixError(status, 'M_UNKNOWN', 'Service unavailable'); // readiness says so on purpose
    }
    const status = (exception as { status?: unknown } | null)?.status;
    if (typeof status === 'number' && status >= 400 && status < 500)
      return new MatrixError(status, 'M_UNKNOWN', 'Bad request');
    this.logger.error(
      `unhandled error: ${exception instanceof Error ? (exception.stack ?? exception.message) : String(exception)}`,
    );
    return new MatrixError(500, 'M_UNKNOWN', 'Internal server error');
  }
}
