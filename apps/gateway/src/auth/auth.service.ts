import { Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { invalidParam, missingToken, Sender, unknownToken } from '@app/matrix';
import { clientKey } from '../http/client-address';
import { accessTokenOf } from './access-token';
import { Appservices } from './appservices';
import { HomeserverTokens } from './homeserver-tokens';
import { StaticTokens } from './static-tokens';

export interface Authenticated {
  sender: Sender;
  /** Whether per-sender rate limits apply. */
  rateLimited: boolean;
  /** `?ts=`, which only application services may set. */
  originServerTs?: number;
}

/** The token sources, in order: static tokens, application services, then the homeserver (if configured). */
@Injectable()
export class AuthService {
  constructor(
    private readonly staticTokens: StaticTokens,
    private readonly appservices: Appservices,
    private readonly homeserver: HomeserverTokens | null,
  ) {}

  async authenticate(req: Request): Promise<Authenticated> {
    const token = accessTokenOf(req);
    if (token === undefined) throw missingToken();
    const known = this.staticTokens.lookup(token);
    if (known) return { sender: known, rateLimited: true };
    const registration = this.appservices.byToken(token);
    if (registration) {
      const { sender, rateLimited } = this.appservices.requester(registration, req.query);
      return { sender, rateLimited, originServerTs: timestampOf(req.query.ts) };
    }
    if (!this.homeserver) throw unknownToken();
    return { sender: await this.homeserver.lookup(token, clientKey(req.ip)), rateLimited: true };
  }
}

function timestampOf(ts: unknown): number | undefined {
  if (ts === undefined) return undefined;
  const value = typeof ts === 'string' && /^\d{1,16}$/.test(ts) ? Number(ts) : NaN;
  if (!Number.isSafeInteger(value)) throw invalidParam('ts must be a timestamp in milliseconds');
  return value;
}
