import type { Request } from 'express';
import { MatrixError } from '@app/matrix';

/**
 * The spec's two token sources: `Authorization: Bearer` or the `access_token` query parameter. A request that
 * carries both is refused, as Synapse does, rather than silently trusting one of them.
 */
export function accessTokenOf(req: Request): string | undefined {
  const header = req.headers.authorization;
  const query = req.query.access_token;
  if (header !== undefined && query !== undefined) {
    throw new MatrixError(401, 'M_MISSING_TOKEN', 'Mixing Authorization headers and access_token query parameters.');
  }
  if (typeof header === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? match[1] : undefined;
  }
  return typeof query === 'string' && query !== '' ? query : undefined;
}
