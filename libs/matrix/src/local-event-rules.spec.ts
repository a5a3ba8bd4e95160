import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JsonObject } from './canonical-json';
import { MatrixError, MAX_QUOTED_CHARS } from './errors';
import { checkLocalEvent, globMatches, serverMatchesAcl } from './local-event-rules';

const ROOM = '!room:example.org';
const SERVER = 'example.org';

/** 'accepted', or `status errcode: message` of the refusal. */
function judge(type: string, content: JsonObject, serverName = SERVER): string {
  try {
    checkLocalEvent({ roomId: ROOM, type, content }, serverName);
    return 'accepted';
  } catch (error) {
    assert.ok(error instanceof MatrixError);
    return `${error.status} ${error.errcode}: ${error.message}`;
  }
}

const text = { msgtype: 'm.text', body: 'hi' };

describe('the reference homeserver rules for a locally sent event', () => {
  it('requires string body and msgtype on m.room.message', () => {
    assert.equal(judge('m.room.message', text), 'accepted');
    assert.equal(judge('m.room.message', { msgtype: 'm.text' }), "400 M_UNKNOWN: 'body' not in content");
    assert.equal(judge('m.room.message', { body: 'x' }), "400 M_UNKNOWN: 'msgtype' not in content");
    assert.equal(judge('m.room.message', { body: 1, msgtype: 'm.text' }), "400 M_UNKNOWN: 'body' not a string type");
    assert.equal(judge('m.room.message', { body: 'x', msgtype: null }), "400 M_UNKNOWN: 'msgtype' not a string type");
    // Other types carry no such requirement.
    assert.equal(judge('org.example.custom', {}), 'accepted');
    assert.equal(judge('m.room.encrypted', { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'x' }), 'accepted');
  });

  it('refuses the types that exist only as state events, after their content checks', () => {
    assert.equal(judge('m.room.topic', {}), "400 M_UNKNOWN: 'topic' not in content");
    assert.equal(judge('m.room.topic', { topic: 'x' }), "400 M_UNKNOWN: 'm.room.topic' must be state events");
    assert.equal(judge('m.room.name', { name: 1 }), "400 M_UNKNOWN: 'name' not a string type");
    assert.equal(judge('m.room.name', { name: 'x' }), "400 M_UNKNOWN: 'm.room.name' must be state events");
    assert.equal(judge('m.room.member', { membership: 'join' }), "400 M_UNKNOWN: 'm.room.member' must be state events");
    assert.equal(judge('m.room.tombstone', {}), '400 M_UNKNOWN: Content has no replacement_room key');
    assert.equal(
      judge('m.room.tombstone', { replacement_room: ROOM }),
      '400 M_UNKNOWN: Tombstone cannot reference the room it was sent in',
    );
    assert.equal(
      judge('m.room.tombstone', { replacement_room: '!new:example.org' }),
      "400 M_UNKNOWN: 'm.room.tombstone' must be state events",
    );
    assert.equal(judge('m.room.retention', { max_lifetime: 1000 }), '400 M_UNKNOWN: must be a state event');
    assert.equal(judge('m.room.create', { room_version: '11' }), '403 M_FORBIDDEN: Create event has prev events');
  });

  it('checks m.mentions against its schema on every event type', () => {
    assert.equal(judge('m.room.message', { ...text, 'm.mentions': {} }), 'accepted');
    assert.equal(
      judge('m.room.message', { ...text, 'm.mentions': { user_ids: ['@a:example.org'], room: true, x: 1 } }),
      'accepted',
    );
    assert.equal(
      judge('m.room.message', { ...text, 'm.mentions': { user_ids: '@alice:example.org' } }),
      `400 M_BAD_JSON: "user_ids": not of type 'array'`,
    );
    assert.equal(
      judge('m.room.message', { ...text, 'm.mentions': { user_ids: ['@a:example.org', 1] } }),
      `400 M_BAD_JSON: "user_ids": an item is not of type 'string'`,
    );
    assert.equal(
      judge('m.room.message', { ...text, 'm.mentions': { room: 'yes' } }),
      `400 M_BAD_JSON: "room": not of type 'boolean'`,
    );
    assert.equal(judge('m.sticker', { 'm.mentions': [] }), `400 M_BAD_JSON: "m.mentions": not of type 'object'`);
    assert.equal(judge('m.sticker', { 'm.mentions': null }), `400 M_BAD_JSON: "m.mentions": not of type 'object'`);
  });

  it('requires a string key of at most 500 code points on an annotation', () => {
    const reaction = (relation: JsonObject): string => judge('m.reaction', { 'm.relates_to': relation });
    assert.equal(reaction({ rel_type: 'm.annotation', event_id: '$x', key: '👍' }), 'accepted');
    assert.equal(reaction({ rel_type: 'm.annotation', event_id: '$x' }), '400 M_UNKNOWN: Missing aggregation key');
    assert.equal(
      reaction({ rel_type: 'm.annotation', event_id: '$x', key: 1 }),
      '400 M_UNKNOWN: Missing aggregation key',
    );
    assert.equal(reaction({ rel_type: 'm.annotation', event_id: '$x', key: '😀'.repeat(500) }), 'accepted');
    assert.equal(
      reaction({ rel_type: 'm.annotation', event_id: '$x', key: 'x'.repeat(501) }),
      '400 M_UNKNOWN: Aggregation key is too long',
    );
    // Without a string event_id the reference sees no relation at all.
    assert.equal(reaction({ rel_type: 'm.annotation' }), 'accepted');
    assert.equal(reaction({ rel_type: 'm.annotation', event_id: 5 }), 'accepted');
    assert.equal(reaction({ rel_type: 'm.reference', event_id: '$x' }), 'accepted');
  });

  it('checks power levels against their schema', () => {
    const levels = { ban: 50, events: { 'm.room.name': 100 }, users: { '@a:example.org': 100 }, users_default: 0 };
    assert.equal(judge('m.room.power_levels', levels), 'accepted');
    assert.equal(judge('m.room.power_levels', { ...levels, other: 'anything' }), 'accepted');
    assert.equal(judge('m.room.power_levels', { ban: '50' }), `400 M_BAD_JSON: "ban": not of type 'integer'`);
    assert.equal(judge('m.room.power_levels', { kick: true }), `400 M_BAD_JSON: "kick": not of type 'integer'`);
    assert.equal(judge('m.room.power_levels', { users: [] }), `400 M_BAD_JSON: "users": not of type 'object'`);
    assert.equal(
      judge('m.room.power_levels', { events: { 'm.room.name': null } }),
      `400 M_BAD_JSON: "events"."m.room.name": not of type 'integer'`,
    );
  });

  it('quotes at most MAX_QUOTED_CHARS of a power level name in the error, and logs none of it', () => {
    const name = `@${'a'.repeat(27_000)}:example.org`;
    for (const key of ['users', 'events', 'notifications']) {
      assert.throws(
        () =>
          checkLocalEvent({ roomId: ROOM, type: 'm.room.power_levels', content: { [key]: { [name]: 'x' } } }, SERVER),
        (error: unknown) => {
          assert.ok(error instanceof MatrixError);
          assert.equal(error.errcode, 'M_BAD_JSON');
          assert.ok(error.message.includes(name.slice(0, MAX_QUOTED_CHARS)), 'the client sees which name it was');
          assert.ok(error.message.length < 200, `an error of ${error.message.length} characters`);
          assert.ok(error.logText !== undefined && !error.logText.includes('aaaa'), 'the log text quotes nothing');
          return true;
        },
      );
    }
  });

  it('bounds m.room.aliases entries at 255 code points', () => {
    assert.equal(judge('m.room.aliases', { aliases: [`#${'é'.repeat(254)}`] }), 'accepted');
    assert.equal(
      judge('m.room.aliases', { aliases: ['#ok:example.org', `#${'a'.repeat(255)}`] }),
      "400 M_INVALID_PARAM: Can't create aliases longer than 255 characters",
    );
  });

  it('checks the types of an m.room.canonical_alias', () => {
    assert.equal(judge('m.room.canonical_alias', { alias: '#a:example.org', alt_aliases: ['#b:x'] }), 'accepted');
    assert.equal(judge('m.room.canonical_alias', { alias: null }), 'accepted');
    assert.equal(
      judge('m.room.canonical_alias', { alias: 1 }),
      '400 M_INVALID_PARAM: The alias must be of type string.',
    );
    assert.equal(
      judge('m.room.canonical_alias', { alt_aliases: '#b:x' }),
      '400 M_INVALID_PARAM: The alt_aliases property must be a list.',
    );
    assert.equal(
      judge('m.room.canonical_alias', { alt_aliases: null }),
      '400 M_INVALID_PARAM: The alt_aliases property must be a list.',
    );
    assert.equal(
      judge('m.room.canonical_alias', { alt_aliases: ['#b:x', {}] }),
      '400 M_INVALID_PARAM: Each alt_alias must be of type string.',
    );
  });

  it('refuses an m.room.server_acl that would shut this server out', () => {
    assert.equal(judge('m.room.server_acl', { allow: ['*'] }), 'accepted');
    assert.equal(
      judge('m.room.server_acl', {}),
      "400 M_UNKNOWN: Can't create an ACL event that denies the local server",
    );
    assert.equal(
      judge('m.room.server_acl', { allow: ['*'], deny: ['*.org'] }),
      "400 M_UNKNOWN: Can't create an ACL event that denies the local server",
    );
    assert.ok(serverMatchesAcl({ allow: ['EXAMPLE.org'] }, 'example.org'), 'globs ignore case');
    assert.ok(serverMatchesAcl({ allow: 'nonsense', deny: 5 }, 'x') === false);
    assert.ok(serverMatchesAcl({ allow: ['*', 1], deny: [2] }, 'x'), 'non-string entries are ignored');
    assert.ok(!serverMatchesAcl({ allow: ['*'], allow_ip_literals: false }, '1.2.3.4'));
    assert.ok(!serverMatchesAcl({ allow: ['*'], allow_ip_literals: false }, '[::1]'));
    assert.ok(serverMatchesAcl({ allow: ['*'], allow_ip_literals: 'no' }, '1.2.3.4'));
    assert.ok(serverMatchesAcl({ allow: ['*'], allow_ip_literals: false }, '1.2.3.256'));
  });

  it('matches globs in linear time, whole string', () => {
    assert.ok(globMatches('*.example.org', 'a.example.org'));
    assert.ok(!globMatches('*.example.org', 'example.org'));
    assert.ok(globMatches('ex?mple.org', 'example.org'));
    assert.ok(!globMatches('ex?mple.org', 'exmple.org'));
    assert.ok(globMatches('**', ''));
    assert.ok(globMatches('a*b*c', 'aXXbYYc'));
    assert.ok(!globMatches('a*b*c', 'aXXbYY'));
    assert.ok(globMatches('?', '😀'), '? is one code point');
    // A glob that makes a backtracking regex explode answers at once.
    assert.ok(!globMatches(`${'*a'.repeat(40)}b`, 'a'.repeat(255)));
  });
});
