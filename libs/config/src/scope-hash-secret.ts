import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { AppConfig, ConfigError } from './app-config';

/** Where `npm start` keeps the development secret it provides: shared by every instance started from one checkout. */
export const DEV_SCOPE_HASH_SECRET_FILE = '.cache/scope-hash-secret';
const MIN_SECRET_BYTES = 32;

export interface ScopeHashSecret {
  key: Buffer;
  /** Where it came from, for one start-up line (never the value). */
  source: 'SCOPE_HASH_SECRET' | 'SCOPE_HASH_SECRET_FILE';
}

/**
 * The key for scope hashes: SCOPE_HASH_SECRET, else SCOPE_HASH_SECRET_FILE. Neither is a ConfigError: a key made
 * up per host would hash one device differently on two gateways, and a retry through the other one would be
 * appended again. Development gets one from `npm start` (developmentScopeHashSecretFile).
 */
export function loadScopeHashSecret(config: AppConfig): ScopeHashSecret {
  if (config.SCOPE_HASH_SECRET !== undefined)
    return { key: Buffer.from(config.SCOPE_HASH_SECRET), source: 'SCOPE_HASH_SECRET' };
  if (config.SCOPE_HASH_SECRET_FILE === undefined) {
    throw new ConfigError(
      'invalid configuration: SCOPE_HASH_SECRET or SCOPE_HASH_SECRET_FILE: expected one of them, the key of the ' +
        'scope hashes in Kafka (32+ characters, the same for every gateway of a deployment, or retries through ' +
        `another gateway are appended twice); npm start provides a development one in ${DEV_SCOPE_HASH_SECRET_FILE}`,
    );
  }
  const path = config.SCOPE_HASH_SECRET_FILE;
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (error) {
    throw new ConfigError(
      `invalid configuration: SCOPE_HASH_SECRET_FILE=${JSON.stringify(path)}: cannot be read (${(error as NodeJS.ErrnoException).code})`,
    );
  }
  if (Buffer.byteLength(text) < MIN_SECRET_BYTES) {
    throw new ConfigError(
      `invalid configuration: SCOPE_HASH_SECRET_FILE=${JSON.stringify(path)}: expected at least ${MIN_SECRET_BYTES} bytes`,
    );
  }
  return { key: Buffer.from(text), source: 'SCOPE_HASH_SECRET_FILE' };
}

/**
 * For `npm start` only: the path of a development secret in .cache, generated on first use, to pass as
 * SCOPE_HASH_SECRET_FILE. Written aside, then linked into place: of two starting at once, one secret wins, whole.
 */
export function developmentScopeHashSecretFile(devFile = resolve(DEV_SCOPE_HASH_SECRET_FILE)): string {
  if (!existsSync(devFile)) {
    mkdirSync(dirname(devFile), { recursive: true });
    const draft = `${devFile}.${process.pid}`;
    writeFileSync(draft, randomBytes(MIN_SECRET_BYTES).toString('base64url'), { mode: 0o600 });
    try {
      linkSync(draft, devFile);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      unlinkSync(draft);
    }
  }
  return devFile;
}
