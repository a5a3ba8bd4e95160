import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { limitExceeded } from '@app/matrix';
import { AuthenticatedRequest } from '../auth/auth.guard';
import { TokenBuckets } from './token-buckets';

/** Rate limits senders (per gateway instance); application services and exempt registrations pass. */
@Injectable()
export class RateLimitGuard implements CanActivate {
  private readonly buckets: TokenBuckets | null;

  constructor(config: AppConfig) {
    this.buckets =
      config.RATE_LIMIT_PER_SECOND > 0 ? new TokenBuckets(config.RATE_LIMIT_PER_SECOND, config.RATE_LIMIT_BURST) : null;
  }

  canActivate(context: ExecutionContext): boolean {
    const { auth } = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (!this.buckets || !auth.rateLimited) return true;
    const waitMs = this.buckets.take(auth.sender.userId);
    if (waitMs > 0) throw limitExceeded(waitMs);
    return true;
  }
}
