import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { forbidden, invalidParam, isUserId, Sender, serverNameOf, sha256Base64Url } from '@app/matrix';

/** The fields of an application service registration (spec: Application Service API, "Registration") we use. */
export interface Registration {
  id: string;
  as_token: string;
  sender_localpart: string;
  /** User namespaces: regexes matched from the start of the user ID, as Synapse does. */
  users: RegExp[];
  rate_limited: boolean;
}

export interface AppserviceRequester {
  sender: Sender;
  /** True when the sender is subject to rate limits: a masqueraded user of a registration that does not opt out. */
  rateLimited: boolean;
}

export class RegistrationError extends Error {}

/** Application services, looked up by the SHA-256 of their as_token (the same time whatever the token's characters). */
export class Appservices {
  private readonly byTokenHash = new Map<string, Registration>();

  constructor(
    registrations: Registration[],
    private readonly serverName: string,
  ) {
    for (const registration of registrations)
      this.byTokenHash.set(sha256Base64Url(registration.as_token), registration);
  }

  static fromFiles(paths: string[], serverName: string): Appservices {
    return new Appservices(
      paths.map((path) => parseRegistration(path)),
      serverName,
    );
  }

  byToken(token: string): Registration | undefined {
    return this.byTokenHash.get(sha256Base64Url(token));
  }

  /**
   * Who an application service request acts as: `?user_id=` masquerades as a user in the service's namespace
   * (or its own sender), otherwise the service's own sender. `?device_id=` (or the older
   * `org.matrix.msc3202.device_id`) names the device.
   */
  requester(registration: Registration, query: Record<string, unknown>): AppserviceRequester {
    const own = `@${registration.sender_localpart}:${this.serverName}`;
    const userId = query.user_id;
    const deviceId = firstString(query.device_id) ?? firstString(query['org.matrix.msc3202.device_id']);
    const sender = (id: string): Sender => ({
      userId: id,
      appserviceId: registration.id,
      ...(deviceId ? { deviceId } : {}),
    });
    if (userId === undefined) return { sender: sender(own), rateLimited: false };
    if (typeof userId !== 'string' || !isUserId(userId)) throw invalidParam('user_id is not a valid user ID');
    if (userId === own) return { sender: sender(own), rateLimited: false };
    const inNamespace =
      serverNameOf(userId) === this.serverName && registration.users.some((regex) => regex.test(userId));
    if (!inNamespace) throw forbidden('Application service cannot masquerade as this user.');
    return { sender: sender(userId), rateLimited: registration.rate_limited };
  }
}

const firstString = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : undefined;

function parseRegistration(path: string): Registration {
  const fail = (why: string): never => {
    throw new RegistrationError(`MATRIX_APPSERVICE_FILES ${path}: ${why}`);
  };
  let doc: Record<string, unknown>;
  try {
    doc = parseYaml(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error));
  }
  if (!doc || typeof doc !== 'object') return fail('not a registration');
  const { id, as_token, sender_localpart, namespaces, rate_limited } = doc;
  if (typeof id !== 'string' || id === '') fail('id must be a non-empty string');
  if (typeof as_token !== 'string' || as_token.length < 8) fail('as_token must be a string of 8+ characters');
  if (typeof sender_localpart !== 'string' || sender_localpart === '')
    fail('sender_localpart must be a non-empty string');
  const users = ((namespaces as { users?: unknown } | undefined)?.users ?? []) as unknown;
  if (!Array.isArray(users)) fail('namespaces.users must be a list');
  const regexes = (users as { regex?: unknown }[]).map((entry, i) => {
    if (typeof entry?.regex !== 'string') return fail(`namespaces.users[${i}].regex must be a string`);
    try {
      return new RegExp(`^(?:${entry.regex})`);
    } catch {
      return fail(`namespaces.users[${i}].regex is not a valid regular expression`);
    }
  });
  return {
    id: id as string,
    as_token: as_token as string,
    sender_localpart: sender_localpart as string,
    users: regexes,
    rate_limited: rate_limited !== false, // the spec's default is true
  };
}
