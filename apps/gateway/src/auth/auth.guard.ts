import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { Authenticated, AuthService } from './auth.service';

export interface AuthenticatedRequest extends Request {
  auth: Authenticated;
}

/** Resolves the access token to who is sending and attaches that to the request; the token goes no further. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(private readonly auth: AuthService) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<AuthenticatedRequest>();
    req.auth = await this.auth.authenticate(req);
    return true;
  }
}
