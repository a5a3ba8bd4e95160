import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deriveEventId, EVENT_ID_PATTERN } from './event-id';
import { sha256Base64Url, shortHash } from './hash';
import { scopeHash, transactionIdentity, transactionScope } from './transaction';

const event = {
  room_id: '!r:example.com',
  sender: '@a:example.com',
  type: 'm.room.message',
  content: { body: 'hi' },
  origin_server_ts: 1,
};
const position = { topic: 'matrix.send.commands', partition: 3, offset: '42' };

describe('event IDs', () => {
  it('have the room v4+ form', () => {
    assert.match(deriveEventId(position, event), EVENT_ID_PATTERN);
  });

  it('are the same when the same command is processed again, and differ for another log position', () => {
    assert.equal(deriveEventId(position, event), deriveEventId({ ...position }, { ...event, content: { body: 'hi' } }));
    assert.notEqual(deriveEventId(position, event), deriveEventId({ ...position, offset: '43' }, event));
    assert.notEqual(deriveEventId(position, event), deriveEventId(position, { ...event, content: { body: 'ho' } }));
  });
});

const SECRET = Buffer.from('a server secret of at least thirty-two bytes');

describe('transaction scope', () => {
  it('reaches Kafka only keyed with the server secret, never as a bare hash of the token it came from', () => {
    const tokenScope = { userId: '@a:x', tokenHash: sha256Base64Url('short') };
    const keyed = scopeHash(tokenScope, SECRET);
    assert.notEqual(keyed, shortHash(transactionScope(tokenScope)));
    assert.notEqual(keyed, scopeHash(tokenScope, Buffer.from('another server secret, just as long as that')));
    assert.equal(keyed, scopeHash({ ...tokenScope }, Buffer.from(SECRET)));
  });

  it('is the device: a new token for the same device is the same scope', () => {
    const a = transactionScope({ userId: '@a:x', deviceId: 'D1', tokenHash: 'h1' });
    const b = transactionScope({ userId: '@a:x', deviceId: 'D1', tokenHash: 'h2' });
    assert.equal(a, b);
    assert.notEqual(a, transactionScope({ userId: '@a:x', deviceId: 'D2', tokenHash: 'h1' }));
  });

  it('is the token when there is no device, and includes the masqueraded user for application services', () => {
    assert.notEqual(
      transactionScope({ userId: '@a:x', tokenHash: 'h1' }),
      transactionScope({ userId: '@a:x', tokenHash: 'h2' }),
    );
    const asUser1 = transactionScope({ appserviceId: 'irc', userId: '@irc_1:x' });
    assert.notEqual(asUser1, transactionScope({ appserviceId: 'irc', userId: '@irc_2:x' }));
    assert.notEqual(asUser1, transactionScope({ appserviceId: 'irc', userId: '@irc_1:x', deviceId: 'D' }));
  });

  it('hashes into short keys, and a transaction is (scope, room, type, txnId)', () => {
    const hash = scopeHash({ userId: '@a:x', deviceId: 'D1' }, SECRET);
    assert.match(hash, /^[A-Za-z0-9_-]{22}$/);
    const id = transactionIdentity(hash, '!r:x', 'm.room.message', 't1');
    assert.notEqual(id, transactionIdentity(hash, '!other:x', 'm.room.message', 't1'));
    assert.notEqual(id, transactionIdentity(hash, '!r:x', 'm.reaction', 't1'));
    assert.equal(id, transactionIdentity(hash, '!r:x', 'm.room.message', 't1'));
  });
});
