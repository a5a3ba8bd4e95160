import { Logger } from '@nestjs/common';
import { isDeviceId, isUserId, MatrixError, Sender, sha256Base64Url, unavailable, unknownToken } from '@app/matrix';

interface Cached {
  expires: number;
  outcome: Sender | MatrixError;
}

export interface HomeserverTokensOptions {
  baseUrl: string;
  positiveTtlMs: number;
  negativeTtlMs: number;
  timeoutMs: number;
  /** Bound on cached valid tokens; the oldest go first. */
  maxEntries?: number;
  /** Bound on cached unknown tokens, kept apart so that a flood of bad tokens never evicts a valid one. */
  maxUnknownEntries?: number;
  /** Look-ups waiting for the homeserver at once; a token beyond that gets a retryable 503. */
  maxConcurrent?: number;
  /** Of those, the most one client (see `lookup`) may start; its further new tokens get a retryable 503. */
  maxConcurrentPerClient?: number;
  fetch?: typeof fetch;
  now?: () => number;
}

/**
 * Tokens that only the homeserver knows, checked with its `GET /_matrix/client/v3/account/whoami`. Answers are
 * cached (a positive one for longer, an unknown token briefly), concurrent look-ups of one token share one call,
 * at most `maxConcurrent` calls run at once, and a homeserver that is down or slow gives a retryable error within
 * `timeoutMs`. Tokens are cached by hash. A token revoked at the homeserver keeps working here until its cache
 * entry expires (`positiveTtlMs`).
 */
export class HomeserverTokens {
  private readonly known = new Map<string, Cached>();
  private readonly unknown = new Map<string, Cached>();
  private readonly inFlight = new Map<string, Promise<Sender>>();
  /** Look-ups in flight by the client that started them. */
  private readonly inFlightByClient = new Map<string, number>();
  private readonly fetch: typeof fetch;
  private readonly now: () => number;
  private readonly logger = new Logger(HomeserverTokens.name);

  constructor(private readonly options: HomeserverTokensOptions) {
    this.fetch = options.fetch ?? fetch;
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * Who `token` belongs to. `client` names where the request came from (an address): one client starts at most
   * `maxConcurrentPerClient` look-ups at once, so a client trying many tokens cannot hold every slot.
   */
  async lookup(token: string, client = 'unknown'): Promise<Sender> {
    const tokenHash = sha256Base64Url(token);
    const cached = this.known.get(tokenHash) ?? this.unknown.get(tokenHash);
    if (cached && cached.expires > this.now()) {
      if (cached.outcome instanceof MatrixError) throw cached.outcome;
      return cached.outcome;
    }
    let pending = this.inFlight.get(tokenHash);
    if (!pending) {
      const byClient = this.inFlightByClient.get(client) ?? 0;
      if (
        this.inFlight.size >= (this.options.maxConcurrent ?? 64) ||
        byClient >= (this.options.maxConcurrentPerClient ?? 8)
      ) {
        throw unavailable('Too many access tokens are being checked with the homeserver; retry shortly', 1);
      }
      this.inFlightByClient.set(client, byClient + 1);
      pending = this.ask(token, tokenHash).finally(() => {
        this.inFlight.delete(tokenHash);
        const left = (this.inFlightByClient.get(client) ?? 1) - 1;
        if (left > 0) this.inFlightByClient.set(client, left);
        else this.inFlightByClient.delete(client);
      });
      this.inFlight.set(tokenHash, pending);
    }
    return pending;
  }

  private async ask(token: string, tokenHash: string): Promise<Sender> {
    let res: Response;
    try {
      res = await this.fetch(new URL('/_matrix/client/v3/account/whoami', this.options.baseUrl), {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch {
      throw unavailable('Could not check the access token: the homeserver did not answer', 2);
    }
    const body = (await res.json().catch(() => null)) as Record<string, unknown> | null;
    if (res.ok && typeof body?.user_id === 'string') {
      if (!isUserId(body.user_id) || (typeof body.device_id === 'string' && !isDeviceId(body.device_id))) {
        // The homeserver's fault, not the token's: retryable, not cached, and the IDs stay out of the log.
        this.logger.warn('The homeserver answered whoami with a user_id or device_id outside the Matrix grammar');
        throw unavailable('Could not check the access token: the homeserver answered with an invalid ID', 2);
      }
      const sender: Sender = {
        userId: body.user_id,
        tokenHash,
        ...(typeof body.device_id === 'string' ? { deviceId: body.device_id } : {}),
      };
      this.remember(this.known, tokenHash, sender, this.options.positiveTtlMs, this.options.maxEntries ?? 100_000);
      return sender;
    }
    if (res.status === 401) {
      const rejection = unknownToken(body?.soft_logout === true);
      this.remember(
        this.unknown,
        tokenHash,
        rejection,
        this.options.negativeTtlMs,
        this.options.maxUnknownEntries ?? 10_000,
      );
      throw rejection;
    }
    if (res.status >= 400 && res.status < 500 && res.status !== 429 && typeof body?.errcode === 'string') {
      throw new MatrixError(
        res.status,
        body.errcode as 'M_FORBIDDEN',
        typeof body.error === 'string' ? body.error : 'Forbidden',
      );
    }
    throw unavailable('Could not check the access token: the homeserver answered with an error', 2);
  }

  private remember(
    cache: Map<string, Cached>,
    tokenHash: string,
    outcome: Sender | MatrixError,
    ttlMs: number,
    maxEntries: number,
  ): void {
    this.known.delete(tokenHash);
    this.unknown.delete(tokenHash);
    if (ttlMs <= 0) return;
    cache.set(tokenHash, { expires: this.now() + ttlMs, outcome });
    if (cache.size > maxEntries) cache.delete(cache.keys().next().value!);
  }
}
