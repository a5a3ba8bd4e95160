import { isIPv6 } from 'node:net';

/**
 * Identifier grammars from the spec's appendix ("Identifier Grammar", spec v1.16+). Plain predicates: callers
 * decide which Matrix error a violation is. They accept everything the spec lets servers see in the wild (the
 * historical grammars), not only what a server should mint today.
 */

/** Every identifier (user, room, event type) is limited to 255 bytes including its sigil. */
export const MAX_IDENTIFIER_BYTES = 255;

const byteLength = (s: string): number => Buffer.byteLength(s, 'utf8');

/** A UTF-16 code unit of a surrogate pair without its other half: no Unicode code point, no UTF-8 form. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** True when `value` is a sequence of Unicode code points (no lone surrogate), so it has a UTF-8 form. */
export function isWellFormedUnicode(value: string): boolean {
  return !LONE_SURROGATE.test(value);
}

/**
 * The localpart of historical user IDs and of room IDs with a domain: any code points, control characters and the
 * empty string included, except `:` and NUL.
 */
const isOpaqueLocalpart = (value: string): boolean =>
  !value.includes(':') && !value.includes('\u0000') && isWellFormedUnicode(value);

const dnsName = /^[A-Za-z0-9.-]{1,255}$/;
const ipv6Literal = /^\[([0-9A-Fa-f:.]{2,45})\]$/;

/**
 * `server_name = hostname [ ":" port ]`: a DNS name, an IPv4 literal (which the DNS name characters include) or a
 * bracketed IPv6 literal (RFC 3513), and a port of at most 5 digits that is a TCP port.
 */
export function isServerName(value: string): boolean {
  const match = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(value);
  if (!match) return false;
  const [, host, port] = match;
  if (port !== undefined && Number(port) > 65535) return false;
  const ipv6 = ipv6Literal.exec(host);
  return ipv6 ? isIPv6(ipv6[1]) : dnsName.test(host);
}

/** A room v12+ room ID's opaque part: the create event's ID, 43 characters of URL-safe unpadded base64 (SHA-256). */
const domainlessRoomId = /^[A-Za-z0-9_-]{43}$/;

/**
 * Room IDs (spec: appendices, "Room IDs"): `!localpart:server_name` before room v12, where the localpart is any
 * code points but `:` and NUL; `!` + the create event's reference hash from room v12 on. At most 255 bytes.
 */
export function isRoomId(value: string): boolean {
  if (!value.startsWith('!') || byteLength(value) > MAX_IDENTIFIER_BYTES) return false;
  const colon = value.indexOf(':');
  if (colon === -1) return domainlessRoomId.test(value.slice(1));
  return isOpaqueLocalpart(value.slice(1, colon)) && isServerName(value.slice(colon + 1));
}

/**
 * User IDs (spec: appendices, "User Identifiers" and "Historical User IDs"): `@localpart:server_name`, at most 255
 * bytes. Servers must accept historical localparts (any code points but `:` and NUL, even empty), so this does;
 * `a-z 0-9 . _ = - / +` is only what new users get.
 */
export function isUserId(value: string): boolean {
  if (!value.startsWith('@') || byteLength(value) > MAX_IDENTIFIER_BYTES) return false;
  const colon = value.indexOf(':');
  if (colon === -1) return false;
  return isOpaqueLocalpart(value.slice(1, colon)) && isServerName(value.slice(colon + 1));
}

export function serverNameOf(userId: string): string {
  return userId.slice(userId.indexOf(':') + 1);
}

/**
 * Event types: the spec gives them no grammar but the PDU's 255-byte limit on `type` (and namespacing as a
 * recommendation), so any non-empty string of code points up to 255 bytes. Control characters included: log
 * lines escape them (see @app/observability's logger).
 */
export function isEventType(value: string): boolean {
  return value.length > 0 && byteLength(value) <= MAX_IDENTIFIER_BYTES && isWellFormedUnicode(value);
}

/** The spec leaves transaction IDs opaque; a bound keeps keys and state entries small. */
export const MAX_TXN_ID_BYTES = 255;

export function isTxnId(value: string): boolean {
  return value.length > 0 && byteLength(value) <= MAX_TXN_ID_BYTES && isWellFormedUnicode(value);
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
    value.length > 0 &&
    byteLength(value) <= MAX_DEVICE_ID_BYTES &&
    !value.includes('\u0000') &&
    isWellFormedUnicode(value)
  );
}
