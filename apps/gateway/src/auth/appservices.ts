import { RE2JS } from 're2js';
import { ConfigError } from '@app/config';
import { forbidden, invalidParam, isDeviceId, isUserId, Sender, serverNameOf, sha256Base64Url } from '@app/matrix';
import { readYamlFile } from './yaml-file';

/** The fields of an application service registration (spec: Application Service API, "Registration") we use. */
export interface Registration {
  id: string;
  as_token: string;
  sender_localpart: string;
  /** User namespaces: regexes matched from the start of the user ID, as Synapse does. */
  users: UserNamespace[];
  rate_limited: boolean;
}

/**
 * A `namespaces.users[].regex`, matched from the start of the user ID (Python's `re.match`, as Synapse does) by
 * RE2 (re2js): time linear in the user ID whatever the pattern, where a backtracking engine takes minutes on
 * `@bridge_(a+)+:example\.org` and `@bridge_aaaa…!:example.org`. RE2 has no backreferences or lookaround.
 */
export interface UserNamespace {
  regex: string;
  test(userId: string): boolean;
}

export interface AppserviceRequester {
  sender: Sender;
  /** True when the sender is subject to rate limits: a masqueraded user of a registration that does not opt out. */
  rateLimited: boolean;
}

/** A refused registration: the gateway does not start (one line naming the file, never its tokens). */
export class RegistrationError extends ConfigError {}

/** Application services, looked up by the SHA-256 of their as_token (the same time whatever the token's characters). */
export class Appservices {
  private readonly byTokenHash = new Map<string, Registration>();
  /** Namespaces that match more than their author likely meant, one line each, for the start-up log. */
  readonly warnings: string[];

  constructor(
    registrations: Registration[],
    private readonly serverName: string,
  ) {
    for (const registration of registrations)
      this.byTokenHash.set(sha256Base64Url(registration.as_token), registration);
    this.warnings = registrations.flatMap((registration) => namespaceWarnings(registration, serverName));
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
   * `org.matrix.msc3202.device_id`) names the device: one device ID (see isDeviceId) or 400 M_INVALID_PARAM, since
   * it goes into the transaction scope and a header of every event.
   */
  requester(registration: Registration, query: Record<string, unknown>): AppserviceRequester {
    const own = `@${registration.sender_localpart}:${this.serverName}`;
    const userId = query.user_id;
    const deviceId = deviceIdOf(query.device_id ?? query['org.matrix.msc3202.device_id']);
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

function deviceIdOf(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !isDeviceId(value)) {
    throw invalidParam('device_id must be one device ID of 1 to 255 bytes');
  }
  return value;
}

function parseRegistration(path: string): Registration {
  const fail = (why: string): never => {
    throw new RegistrationError(`MATRIX_APPSERVICE_FILES ${path}: ${why}`);
  };
  let doc: Record<string, unknown>;
  try {
    doc = readYamlFile(path) as Record<string, unknown>;
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
  const regexes = (users as { regex?: unknown }[]).map((entry, i): UserNamespace => {
    const regex = entry?.regex;
    if (typeof regex !== 'string') return fail(`namespaces.users[${i}].regex must be a string`);
    try {
      RE2JS.compile(regex); // alone first: a pattern such as `a)|(b` must not escape the anchoring group
      const anchored = RE2JS.compile(`^(?:${regex})`);
      return { regex, test: (userId) => anchored.test(userId) };
    } catch (error) {
      return fail(
        `namespaces.users[${i}].regex ${JSON.stringify(regex)} is not a regular expression RE2 accepts ` +
          `(no backreferences or lookaround): ${error instanceof Error ? error.message : String(error)}`,
      );
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

/** Namespaces that match every user, or users of every server: legal, and rarely what was meant. */
function namespaceWarnings(registration: Registration, serverName: string): string[] {
  return registration.users.flatMap((namespace, i) => {
    const where = `application service ${JSON.stringify(registration.id)}: namespaces.users[${i}].regex ${JSON.stringify(namespace.regex)}`;
    if (namespace.test(''))
      return [`${where} matches every user ID (it matches the empty string, and matching is from the start)`];
    if (!namespace.regex.includes(':'))
      return [
        `${where} names no server part: it matches these localparts on every server (only users of ${serverName} are accepted here; say ':${serverName.replace(/\./g, '\\.')}' to be exact)`,
      ];
    return [];
  });
}
