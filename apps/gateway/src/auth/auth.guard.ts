import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { missingToken, Sender, unknownToken } from '@app/matrix';
import { accessTokenOf } from './access-token';
import { StaticTokens } from './static-tokens';

export interface AuthenticatedRequest extends Request {
  sender: Sender;
}

/** Resolves the access token to a Sender and attaches it to the request; the token goes no further. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(private readonly tokens: StaticTokens) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const token = accessTokenOf(req);
    if (token === undefined) throw missingToken();
    const sender = this.tokens.lookup(token);
    if (!sender) throw unknownToken();
    req.sender = sender;
    return true;
  }
}
