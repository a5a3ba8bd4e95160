import { Logger, Provider } from '@nestjs/common';
import { AppConfig, loadScopeHashSecret } from '@app/config';
import { scopeHash, Sender } from '@app/matrix';

/** Hashes transaction scopes with the deployment's secret (see SCOPE_HASH_SECRET). */
export class ScopeHasher {
  constructor(private readonly key: Buffer) {}

  hash(sender: Sender): string {
    return scopeHash(sender, this.key);
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
