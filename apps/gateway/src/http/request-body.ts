import type { IncomingMessage, ServerResponse } from 'node:http';
import { MatrixError, tooLarge } from '@app/matrix';

/**
 * Reads a request's body as bytes, whatever Content-Type says (clients do not always send one), up to `limit`
 * bytes (413 M_TOO_LARGE past it, from the declared length before a byte is read). Called only once the request
 * is accepted on its headers alone (method, credentials, rate limit), so a request that is refused costs no more
 * than reading its headers. Parsing is the caller's job, with Matrix' own JSON rules.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(tooLarge(`Request body over ${limit} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (error?: Error): void => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('error', onError);
      if (error) reject(error);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish(tooLarge(`Request body over ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish();
    // The connection ended before the body did: the client left, or missed HTTP_REQUEST_TIMEOUT_MS (Node then
    // destroys the socket). Its doing, not a failure of ours; nobody is left to read the answer.
    const onError = (error: Error): void => finish(req.destroyed ? bodyNotReceived() : error);
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
  });
}

/** A request whose connection closed before its body was in (logged at debug level, like any client error). */
const bodyNotReceived = (): MatrixError => new MatrixError(400, 'M_UNKNOWN', 'Request body not received');

/** Whether the request says it has a body (a length above 0, or chunked). */
export function hasBody(req: IncomingMessage): boolean {
  return Number(req.headers['content-length']) > 0 || req.headers['transfer-encoding'] !== undefined;
}

/**
 * For an answer given before the body was read (401, 405, 413, 429, …): Node would read and discard the rest of
 * the body to reuse the connection. That is cheap for a body the size of a send (no buffering, no parsing), so a
 * client whose token expired keeps its connection; a body of unknown length (chunked), one over `limit`, or one
 * being read when the answer was decided, closes the connection after the answer instead.
 */
export function closeIfBodyWouldBeCostly(req: IncomingMessage, res: ServerResponse, limit: number): void {
  if (req.complete || res.headersSent) return;
  const declared = Number(req.headers['content-length'] ?? 0);
  const cheapToSkip =
    req.headers['transfer-encoding'] === undefined && declared <= limit && req.readableFlowing === null;
  if (!cheapToSkip) res.setHeader('Connection', 'close');
}
