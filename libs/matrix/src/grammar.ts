/**
 * Identifier grammars from the spec's appendices ("Identifier Grammar"). Plain predicates: callers decide
 * which Matrix error a violation is.
 */

/** Every identifier (user, room, event type) is limited to 255 bytes including its sigil. */
export const MAX_IDENTIFIER_BYTES = 255;

const byteLength = (s: string): number => Buffer.byteLength(s, 'utf8');

const hostname = /^[A-Za-z0-9.-]{1,255}$/;
const ipv4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const ipv6 = /^\[[0-9A-Fa-f:.]{2,45}\]$/;

/** `server_name = hostname [ ":" port ]`, where hostname is a DNS name, an IPv4 literal or a bracketed IPv6 literal. */
export function isServerName(value: string): boolean {
  const match = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(value);
  if (!match) return false;
  const [, host, port] = match;
  if (port !== undefined && Number(port) > 65535) return false;
  return ipv6.test(host) || ipv4.test(host) || hostname.test(host);
}

/**
 * Room IDs are opaque: `!localpart:server_name` before room v12, `!` + a 43-character hash from v12 on.
 * Either way the opaque part is printable ASCII.
 */
export function isRoomId(value: string): boolean {
  if (!value.startsWith('!') || byteLength(value) > MAX_IDENTIFIER_BYTES) return false;
  const colon = value.indexOf(':');
  const opaque = colon === -1 ? value.slice(1) : value.slice(1, colon);
  if (!/^[\x21-\x7e]+$/.test(opaque)) return false;
  return colon === -1 || isServerName(value.slice(colon + 1));
}

/** `@localpart:server_name`; the localpart in the historical grammar (printable ASCII but ':'), as servers accept. */
export function isUserId(value: string): boolean {
  if (!value.startsWith('@') || byteLength(value) > MAX_IDENTIFIER_BYTES) return false;
  const colon = value.indexOf(':');
  if (colon < 2) return false;
  return /^[\x21-\x39\x3b-\x7e]+$/.test(value.slice(1, colon)) && isServerName(value.slice(colon + 1));
}

export function serverNameOf(userId: string): string {
  return userId.slice(userId.indexOf(':') + 1);
}

/** Event types are free-form namespaced strings (`m.room.message`, `com.example.x`), at most 255 bytes. */
export function isEventType(value: string): boolean {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  return value.length > 0 && byteLength(value) <= MAX_IDENTIFIER_BYTES && !/[\x00-\x1f\x7f]/.test(value);
}

/** The spec leaves transaction IDs opaque; a bound keeps keys and state entries small. */
export const MAX_TXN_ID_BYTES = 255;

export function isTxnId(value: string): boolean {
  return value.length > 0 && byteLength(value) <= MAX_TXN_ID_BYTES;
}

/** Device IDs: at most 255 bytes, as Synapse's delegated auth (MAS) bounds them. */
export const MAX_DEVICE_ID_BYTES = 255;

/**
 * Device IDs are opaque and the spec gives them no grammar (its Opaque Identifier Grammar is only for the
 * identifiers that name it); Synapse takes any string at login (up to 512 characters). So only what no stored
 * device can be is refused: the empty string, more than 255 bytes, NUL and lone surrogates (which neither UTF-8
 * nor Synapse's database can hold).
 */
export function isDeviceId(value: string): boolean {
  return (
    value.length > 0 && byteLength(value) <= MAX_DEVICE_ID_BYTES && !value.includes('\u0000') && !/\p{Cs}/u.test(value)
  );
}
