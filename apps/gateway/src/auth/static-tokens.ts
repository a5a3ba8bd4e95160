import { ConfigError } from '@app/config';
import { isDeviceId, isUserId, Sender, sha256Base64Url } from '@app/matrix';
import { readYamlFile } from './yaml-file';

export interface StaticTokenEntry {
  token: string;
  user_id: string;
  device_id?: string;
}

/** A refused MATRIX_TOKENS_FILE: the gateway does not start (one line naming the file, never its content). */
export class TokenFileError extends ConfigError {}

/**
 * Tokens from a YAML or JSON file (`MATRIX_TOKENS_FILE`). Looked up by the token's SHA-256, so finding a token
 * takes the same time whatever its characters (no early-exit string compare on the secret).
 */
export class StaticTokens {
  private readonly byHash = new Map<string, Sender>();

  constructor(entries: StaticTokenEntry[]) {
    for (const entry of entries) {
      const tokenHash = sha256Base64Url(entry.token);
      this.byHash.set(tokenHash, { userId: entry.user_id, deviceId: entry.device_id, tokenHash });
    }
  }

  static fromFile(path: string): StaticTokens {
    let parsed: unknown;
    try {
      parsed = readYamlFile(path); // YAML is a superset of JSON
    } catch (error) {
      throw new TokenFileError(`MATRIX_TOKENS_FILE ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (!Array.isArray(parsed))
      throw new TokenFileError(`MATRIX_TOKENS_FILE ${path}: expected a list of {token, user_id, device_id}`);
    return new StaticTokens(parsed.map((entry: unknown, i) => checkEntry(entry, `${path}[${i}]`)));
  }

  lookup(token: string): Sender | undefined {
    return this.byHash.get(sha256Base64Url(token));
  }
}

function checkEntry(entry: unknown, where: string): StaticTokenEntry {
  const e = entry as Partial<StaticTokenEntry> | null;
  if (!e || typeof e.token !== 'string' || e.token.length < 8)
    throw new TokenFileError(`${where}: token must be a string of 8+ characters`);
  if (typeof e.user_id !== 'string' || !isUserId(e.user_id))
    throw new TokenFileError(`${where}: user_id must be a Matrix user ID`);
  if (e.device_id !== undefined && (typeof e.device_id !== 'string' || !isDeviceId(e.device_id))) {
    throw new TokenFileError(`${where}: device_id must be a string of 1 to 255 bytes (no NUL)`);
  }
  return { token: e.token, user_id: e.user_id, device_id: e.device_id };
}
