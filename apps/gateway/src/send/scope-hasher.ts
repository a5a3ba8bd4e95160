import { createSecretKey, KeyObject } from 'node:crypto';
import { Logger, Provider } from '@nestjs/common';
import { AppConfig, loadScopeHashSecret } from '@app/config';
import { scopeHash, Sender, transactionScope } from '@app/matrix';

/** Scopes remembered: a sender's scope hash is the same for each of its sends. */
const MAX_REMEMBERED = 100_000;

/**
 * Hashes transaction scopes with the deployment's secret (see SCOPE_HASH_SECRET). The key is prepared once and
 * recent scopes are remembered: an HMAC per send, with the key converted each time, cost a tenth of the gateway's
 * time at saturation.
 */
export class ScopeHasher {
  private readonly key: KeyObject;
  private readonly remembered = new Map<string, string>();

  constructor(secret: Buffer) {
    this.key = createSecretKey(secret);
  }

  hash(sender: Sender): string {
    const scope = transactionScope(sender);
    let hash = this.remembered.get(scope);
    if (hash === undefined) {
      hash = scopeHash(sender, this.key);
      if (this.remembered.size >= MAX_REMEMBERED) this.remembered.clear();
      this.remembered.set(scope, hash);
    }
    return hash;
  }
}

export const scopeHasherProvider: Provider = {
  provide: ScopeHasher,
  inject: [AppConfig],
  useFactory: (config: AppConfig) => {
    const { key, source } = loadScopeHashSecret(config);
    const logger = new Logger(ScopeHasher.name);
    if (source === 'generated for development') {
      logger.warn(
        'SCOPE_HASH_SECRET is not set: using a development secret from .cache/; every gateway of a deployment needs the same secret',
      );
    }
    return new ScopeHasher(key);
  },
};
