import { createSecretKey, KeyObject } from 'node:crypto';
import { Logger, Provider } from '@nestjs/common';
import { AppConfig, loadScopeHashSecret } from '@app/config';
import { scopeHash, Sender, transactionScope } from '@app/matrix';

/**
 * Heap an entry of the remembered scopes costs beyond its scope's characters: measured 160-172 bytes (Node 24, a
 * Map of 100,000 scopes to 22-character hashes), rounded up.
 */
const ENTRY_OVERHEAD_BYTES = 176;

/**
 * Hashes transaction scopes with the deployment's secret (see SCOPE_HASH_SECRET). The key is prepared once and
 * recent scopes are remembered, up to `maxBytes` of heap (oldest forgotten first): an HMAC per send, with the key
 * converted each time, cost a tenth of the gateway's time at saturation. Bounded in bytes, not entries, since a
 * scope holds a user ID and a device ID of up to 255 bytes each.
 */
export class ScopeHasher {
  private readonly key: KeyObject;
  private readonly remembered = new Map<string, string>();
  private rememberedBytes = 0;

  constructor(
    secret: Buffer,
    private readonly maxBytes: number,
  ) {
    this.key = createSecretKey(secret);
  }

  hash(sender: Sender): string {
    const scope = transactionScope(sender);
    let hash = this.remembered.get(scope);
    if (hash === undefined) {
      hash = scopeHash(sender, this.key);
      this.remember(scope, hash);
    }
    return hash;
  }

  /** Estimated heap of the remembered scopes, in bytes: never above `maxBytes`. */
  get bytes(): number {
    return this.rememberedBytes;
  }

  get size(): number {
    return this.remembered.size;
  }

  private remember(scope: string, hash: string): void {
    const bytes = entryBytes(scope, hash);
    if (bytes > this.maxBytes) return;
    for (const [oldest, oldestHash] of this.remembered) {
      if (this.rememberedBytes + bytes <= this.maxBytes) break;
      this.remembered.delete(oldest);
      this.rememberedBytes -= entryBytes(oldest, oldestHash);
    }
    this.remembered.set(scope, hash);
    this.rememberedBytes += bytes;
  }
}

/** An upper bound: two bytes a UTF-16 unit (V8 keeps Latin-1 strings at one) plus the measured overhead. */
const entryBytes = (scope: string, hash: string): number => 2 * (scope.length + hash.length) + ENTRY_OVERHEAD_BYTES;

export const scopeHasherProvider: Provider = {
  provide: ScopeHasher,
  inject: [AppConfig],
  useFactory: (config: AppConfig) => {
    const { key, source } = loadScopeHashSecret(config);
    new Logger(ScopeHasher.name).log(`scope hashes keyed with ${source}`);
    return new ScopeHasher(key, config.SCOPE_CACHE_MAX_BYTES);
  },
};
