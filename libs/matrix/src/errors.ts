/**
 * Matrix standard error responses (`{"errcode", "error"}`), independent of any HTTP framework.
 * The gateway's exception filter turns a MatrixError into the response; everything else here only throws them.
 */
export type Errcode =
  | 'M_MISSING_TOKEN'
  | 'M_UNKNOWN_TOKEN'
  | 'M_NOT_JSON'
  | 'M_BAD_JSON'
  | 'M_INVALID_PARAM'
  | 'M_TOO_LARGE'
  | 'M_FORBIDDEN'
  | 'M_DUPLICATE_ANNOTATION'
  | 'M_LIMIT_EXCEEDED'
  | 'M_UNRECOGNIZED'
  | 'M_UNKNOWN';

export interface MatrixErrorBody {
  errcode: Errcode;
  error: string;
  [extra: string]: unknown;
}

export class MatrixError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: Errcode,
    message: string,
    /** Extra body fields, e.g. `retry_after_ms` or `soft_logout`. */
    readonly extra: Record<string, unknown> = {},
    /** Seconds for a `Retry-After` header, when the client should retry. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'MatrixError';
  }

  /**
   * What a log line may say of this error: the message, unless the message quotes the client's input (content
   * is never logged), in which case the text without the quote.
   */
  logText?: string;

  toBody(): MatrixErrorBody {
    return { errcode: this.errcode, error: this.message, ...this.extra };
  }
}

export const missingToken = (): MatrixError => new MatrixError(401, 'M_MISSING_TOKEN', 'Missing access token');
export const unknownToken = (softLogout = false): MatrixError =>
  new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Unrecognised access token', softLogout ? { soft_logout: true } : {});
export const notJson = (why: string): MatrixError => new MatrixError(400, 'M_NOT_JSON', why);
export const badJson = (why: string): MatrixError => new MatrixError(400, 'M_BAD_JSON', why);

/** Most characters of the client's input an error text quotes (an integer of 100,000 digits is not echoed whole). */
export const MAX_QUOTED_CHARS = 40;

/**
 * A 400 M_BAD_JSON that shows the client which value was wrong, quoting at most MAX_QUOTED_CHARS of it; logs get
 * `why` alone.
 */
export function badJsonValue(why: string, value: string): MatrixError {
  const error = badJson(`${why} (${quoted(value)})`);
  error.logText = why;
  return error;
}

/** The client's input as an error text may quote it: whole up to MAX_QUOTED_CHARS, else its start and length. */
export function quoted(value: string): string {
  return value.length > MAX_QUOTED_CHARS ? `${value.slice(0, MAX_QUOTED_CHARS)}… (${value.length} characters)` : value;
}
export const invalidParam = (why: string): MatrixError => new MatrixError(400, 'M_INVALID_PARAM', why);
export const tooLarge = (why: string): MatrixError => new MatrixError(413, 'M_TOO_LARGE', why);
export const forbidden = (why: string): MatrixError => new MatrixError(403, 'M_FORBIDDEN', why);
export const unrecognized = (status: 404 | 405): MatrixError =>
  new MatrixError(status, 'M_UNRECOGNIZED', status === 404 ? 'Unrecognized request' : 'Method not allowed');
export const limitExceeded = (retryAfterMs: number): MatrixError =>
  new MatrixError(
    429,
    'M_LIMIT_EXCEEDED',
    'Too many requests',
    { retry_after_ms: retryAfterMs },
    Math.ceil(retryAfterMs / 1000),
  );
/** A transient failure: the client should retry the same transaction later. */
export const unavailable = (why: string, retryAfterSeconds = 1): MatrixError =>
  new MatrixError(503, 'M_UNKNOWN', why, {}, retryAfterSeconds);
/** A transient failure with a known end: `retry_after_ms` in the body, `Retry-After` in whole seconds (at least 1). */
export const unavailableFor = (why: string, retryAfterMs: number): MatrixError =>
  new MatrixError(503, 'M_UNKNOWN', why, { retry_after_ms: retryAfterMs }, Math.max(1, Math.ceil(retryAfterMs / 1000)));
