import type { Request } from 'express';

/** The spec's two token sources: `Authorization: Bearer` first, else the `access_token` query parameter. */
export function accessTokenOf(req: Request): string | undefined {
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match) return match[1];
  }
  const query = req.query.access_token;
  return typeof query === 'string' && query !== '' ? query : undefined;
}
