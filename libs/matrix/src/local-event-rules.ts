import { isJsonObject, JsonObject } from './canonical-json';
import { badJson, forbidden, invalidParam, MatrixError, quoted } from './errors';

/**
 * The rules a homeserver applies to an event its own client sends, judged from the event's type, content and room
 * alone (no room state). They are the reference homeserver's: Synapse's `EventValidator.validate_builder` and
 * `validate_new` (synapse/events/validator.py), the relation checks of `_validate_event_relation` and the
 * `m.room.canonical_alias` checks (synapse/handlers/message.py), and the state-independent auth rule for
 * `m.room.create` (spec: room versions, authorization rules 1.1). Where the spec names no error code, the
 * reference's is kept: a plain `SynapseError(400, …)` is 400 `M_UNKNOWN`.
 *
 * The send endpoint makes no state events (they have a `state_key`), so every rule that requires one refuses.
 */
export interface LocalEvent {
  roomId: string;
  type: string;
  content: JsonObject;
}

/** Longest annotation key (`m.relates_to.key`), in code points. */
export const MAX_ANNOTATION_KEY_LENGTH = 500;
/** Longest entry of `m.room.aliases`' `aliases`, in code points. */
export const MAX_ALIAS_LENGTH = 255;

/** The reference's bare 400 (`SynapseError(400, msg)`): no errcode of its own. */
const rejected = (why: string): MatrixError => new MatrixError(400, 'M_UNKNOWN', why);

/** An integer of canonical JSON, ±(2^53−1): the reference's power level. */
const isInteger = (value: unknown): boolean => Number.isSafeInteger(value);
/** Python's len() of a str: code points, not UTF-16 units. */
const codePoints = (s: string): number => [...s].length;
/** Python's truthiness, for the reference's `if value:` tests. */
const truthy = (value: unknown): boolean =>
  Array.isArray(value)
    ? value.length > 0
    : isJsonObject(value)
      ? Object.keys(value).length > 0
      : value !== undefined && value !== null && value !== false && value !== 0 && value !== '';

/**
 * Throws the MatrixError of the first rule `event` breaks, in the reference's order; returns if it breaks none.
 * `serverName` is this deployment's server name, which an `m.room.server_acl` must not deny.
 */
export function checkLocalEvent(event: LocalEvent, serverName: string): void {
  checkBuilder(event);
  checkNew(event, serverName);
  checkRelation(event.content);
  // The reference answers 500 here (create_event reads a state_key a message event lacks); its auth rule's answer:
  if (event.type === 'm.room.create') throw forbidden('Create event has prev events');
  if (event.type === 'm.room.canonical_alias') checkCanonicalAlias(event.content);
}

/** validate_builder: string fields of well-known types, and the types that exist only as state. */
function checkBuilder({ roomId, type, content }: LocalEvent): void {
  const ensureStrings = (...keys: string[]): void => {
    for (const key of keys) {
      if (!Object.hasOwn(content, key)) throw rejected(`'${key}' not in content`);
      if (typeof content[key] !== 'string') throw rejected(`'${key}' not a string type`);
    }
  };
  const stateOnly = (): never => {
    throw rejected(`'${type}' must be state events`);
  };
  switch (type) {
    case 'm.room.message':
      return ensureStrings('body', 'msgtype');
    case 'm.room.topic':
      ensureStrings('topic');
      return stateOnly();
    case 'm.room.name':
      ensureStrings('name');
      return stateOnly();
    case 'm.room.member':
      // The reference answers 500 before its validator sees it ("non-member codepath"); this is its validator's word.
      return stateOnly();
    case 'm.room.tombstone':
      if (!Object.hasOwn(content, 'replacement_room')) throw rejected('Content has no replacement_room key');
      if (content.replacement_room === roomId) throw rejected('Tombstone cannot reference the room it was sent in');
      return stateOnly();
  }
}

/** validate_new: aliases, retention, server ACLs, power levels and mentions. */
function checkNew({ type, content }: LocalEvent, serverName: string): void {
  if (type === 'm.room.aliases' && Object.hasOwn(content, 'aliases')) {
    const aliases = content.aliases;
    const items: unknown[] = Array.isArray(aliases) ? aliases : isJsonObject(aliases) ? Object.keys(aliases) : [];
    for (const alias of items) {
      const length =
        typeof alias === 'string'
          ? codePoints(alias)
          : Array.isArray(alias)
            ? alias.length
            : isJsonObject(alias)
              ? Object.keys(alias).length
              : 0;
      if (length > MAX_ALIAS_LENGTH)
        throw invalidParam(`Can't create aliases longer than ${MAX_ALIAS_LENGTH} characters`);
    }
  } else if (type === 'm.room.retention') {
    throw rejected('must be a state event');
  } else if (type === 'm.room.server_acl') {
    if (!serverMatchesAcl(content, serverName))
      throw rejected("Can't create an ACL event that denies the local server");
  } else if (type === 'm.room.power_levels') {
    checkPowerLevels(content);
  }
  if (Object.hasOwn(content, 'm.mentions')) checkMentions(content['m.mentions']);
}

const POWER_LEVEL_INTS = ['ban', 'events_default', 'invite', 'kick', 'redact', 'state_default', 'users_default'];
const POWER_LEVEL_MAPS = ['events', 'notifications', 'users'];

/** The reference's POWER_LEVELS_SCHEMA: levels are integers, and `events`, `notifications`, `users` map to them. */
function checkPowerLevels(content: JsonObject): void {
  for (const key of POWER_LEVEL_INTS) {
    if (Object.hasOwn(content, key) && !isInteger(content[key])) throw badJson(`"${key}": not of type 'integer'`);
  }
  for (const key of POWER_LEVEL_MAPS) {
    if (!Object.hasOwn(content, key)) continue;
    const map = content[key];
    if (!isJsonObject(map)) throw badJson(`"${key}": not of type 'object'`);
    for (const [name, level] of Object.entries(map)) {
      if (isInteger(level)) continue;
      // The name is the client's (a user ID or event type of any length): quoted bounded, and never logged.
      const error = badJson(`"${key}"."${quoted(name)}": not of type 'integer'`);
      error.logText = `"${key}".<name>: not of type 'integer'`;
      throw error;
    }
  }
}

/**
 * The reference's MENTIONS_SCHEMA (spec: "User and room mentions"): an object whose `user_ids` is a list of strings
 * and whose `room` is a boolean. Messages name the field, never the value (content stays out of the logs).
 */
function checkMentions(mentions: unknown): void {
  if (!isJsonObject(mentions)) throw badJson(`"m.mentions": not of type 'object'`);
  if (Object.hasOwn(mentions, 'user_ids')) {
    const userIds = mentions.user_ids;
    if (!Array.isArray(userIds)) throw badJson(`"user_ids": not of type 'array'`);
    if (!userIds.every((id) => typeof id === 'string')) throw badJson(`"user_ids": an item is not of type 'string'`);
  }
  if (Object.hasOwn(mentions, 'room') && typeof mentions.room !== 'boolean')
    throw badJson(`"room": not of type 'boolean'`);
}

/**
 * _validate_event_relation, the part that needs no room state: an annotation (a relation with a string `rel_type`
 * `m.annotation` and a string `event_id`) needs a string `key` of at most 500 code points. A relation without a
 * string `rel_type` or `event_id` is no relation to the reference, and passes as an ordinary event.
 */
function checkRelation(content: JsonObject): void {
  const relation = content['m.relates_to'];
  if (!isJsonObject(relation) || relation.rel_type !== 'm.annotation' || typeof relation.event_id !== 'string') return;
  const key = relation.key;
  if (typeof key !== 'string') throw rejected('Missing aggregation key');
  if (codePoints(key) > MAX_ANNOTATION_KEY_LENGTH) throw rejected('Aggregation key is too long');
}

/** The content checks of an `m.room.canonical_alias` (whether the aliases exist needs the room directory). */
function checkCanonicalAlias(content: JsonObject): void {
  if (truthy(content.alias) && typeof content.alias !== 'string')
    throw invalidParam('The alias must be of type string.');
  // Only a missing key defaults to []: the reference's `content.get("alt_aliases", [])` keeps an explicit null.
  const altAliases = Object.hasOwn(content, 'alt_aliases') ? content.alt_aliases : [];
  if (!Array.isArray(altAliases)) throw invalidParam('The alt_aliases property must be a list.');
  if (!altAliases.every((alias) => typeof alias === 'string'))
    throw invalidParam('Each alt_alias must be of type string.');
}

/**
 * Whether an ACL lets `serverName` in, as the reference reads `m.room.server_acl` content: entries that are not
 * strings are ignored, as are `allow`/`deny` that are not lists and an `allow_ip_literals` that is not a boolean.
 * IP literals are refused when `allow_ip_literals` is false; then a server matching a `deny` glob is refused, and
 * one matching an `allow` glob let in; any other server is refused.
 */
export function serverMatchesAcl(content: JsonObject, serverName: string): boolean {
  const globs = (value: unknown): string[] =>
    Array.isArray(value) ? value.filter((glob): glob is string => typeof glob === 'string') : [];
  const allowIpLiterals = typeof content.allow_ip_literals === 'boolean' ? content.allow_ip_literals : true;
  if (!allowIpLiterals && (serverName.startsWith('[') || isIpv4Literal(serverName))) return false;
  if (globs(content.deny).some((glob) => globMatches(glob, serverName))) return false;
  return globs(content.allow).some((glob) => globMatches(glob, serverName));
}

/** A dotted quad of decimal numbers 0–255 without leading zeros, as Rust's `Ipv4Addr::from_str` (the reference's). */
const isIpv4Literal = (value: string): boolean =>
  /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(value) && value.split('.').every((n) => Number(n) <= 255);

/**
 * Whole-string glob match, case-insensitive: `*` is any run of characters, `?` one character (spec: appendices,
 * "Glob-style matching"). Matched by the two-pointer method with back-tracking to the last `*` only, so that a
 * glob full of stars costs O(glob × name), not the exponential time a back-tracking regex could take.
 */
export function globMatches(glob: string, value: string): boolean {
  const g = [...glob.toLowerCase()];
  const v = [...value.toLowerCase()];
  let gi = 0;
  let vi = 0;
  let star = -1;
  let resume = 0;
  while (vi < v.length) {
    if (gi < g.length && (g[gi] === '?' || (g[gi] !== '*' && g[gi] === v[vi]))) {
      gi++;
      vi++;
    } else if (gi < g.length && g[gi] === '*') {
      star = gi++;
      resume = vi;
    } else if (star !== -1) {
      gi = star + 1;
      vi = ++resume;
    } else {
      return false;
    }
  }
  while (gi < g.length && g[gi] === '*') gi++;
  return gi === g.length;
}
