import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { limitExceeded } from '@app/matrix';
import { AuthenticatedRequest } from '../auth/auth.guard';
import { Authenticated } from '../auth/auth.service';
import { TokenBuckets } from './token-buckets';

/**
 * The senders' rate limit (per gateway instance), one set of buckets for every method on the send path;
 * application services and exempt registrations pass.
 */
@Injectable()
export class SenderRateLimit {
  private readonly buckets: TokenBuckets | null;

  constructor(config: AppConfig) {
    this.buckets =
      config.RATE_LIMIT_PER_SECOND > 0 ? new TokenBuckets(config.RATE_LIMIT_PER_SECOND, config.RATE_LIMIT_BURST) : null;
  }

  /** Takes one request of `auth`'s sender; throws 429 M_LIMIT_EXCEEDED past the limit. */
  take(auth: Authenticated): void {
    if (!this.buckets || !auth.rateLimited) return;
    const waitMs = this.buckets.take(auth.sender.userId);
    if (waitMs > 0) throw limitExceeded(waitMs);
  }
}

/** Rate limits senders through SenderRateLimit. */
@Injectable()
export class RateLimitGuard implements CanActivate {
  constructor(private readonly limit: SenderRateLimit) {}

  canActivate(context: ExecutionContext): boolean {
    this.limit.take(context.switchToHttp().getRequest<AuthenticatedRequest>().auth);
    return true;
  }
}
