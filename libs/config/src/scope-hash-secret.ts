import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { AppConfig, ConfigError } from './app-config';

/** Where a development secret is kept when none is configured: shared by every instance started from one checkout. */
export const DEV_SCOPE_HASH_SECRET_FILE = '.cache/scope-hash-secret';
const MIN_SECRET_BYTES = 32;

export interface ScopeHashSecret {
  key: Buffer;
  /** Where it came from, for one start-up line (never the value). */
  source: 'SCOPE_HASH_SECRET' | 'SCOPE_HASH_SECRET_FILE' | 'generated for development';
}

/** The key for scope hashes: SCOPE_HASH_SECRET, else SCOPE_HASH_SECRET_FILE, else a development file in .cache. */
export function loadScopeHashSecret(config: AppConfig, devFile = resolve(DEV_SCOPE_HASH_SECRET_FILE)): ScopeHashSecret {
  if (config.SCOPE_HASH_SECRET !== undefined)
    return { key: Buffer.from(config.SCOPE_HASH_SECRET), source: 'SCOPE_HASH_SECRET' };
  if (config.SCOPE_HASH_SECRET_FILE !== undefined) {
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
  if (!existsSync(devFile)) {
    mkdirSync(dirname(devFile), { recursive: true });
    // Written aside, then linked into place: of two instances starting at once, one secret wins, whole.
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
  return { key: Buffer.from(readFileSync(devFile, 'utf8').trim()), source: 'generated for development' };
}
