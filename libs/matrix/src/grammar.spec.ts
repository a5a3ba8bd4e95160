import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isEventType, isRoomId, isServerName, isTxnId, isUserId, isWellFormedUnicode } from './grammar';

const HASH = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'; // 43 characters, as a room v12 ID's opaque part

describe('identifier grammars', () => {
  it('accepts room IDs of every room version, any code point but ":" and NUL in the localpart', () => {
    for (const ok of [
      '!636q39766251:example.com',
      '!a:localhost:8448',
      '!x:[::1]:8008',
      '!x:1.2.3.4',
      '!odd room 🐈:example.org',
      '!tab\there\u0001\u007f\u009b:example.org', // control characters are allowed
      '!:example.org', // the spec sets no minimum on the localpart
      '!ÿ€:example.org',
      `!${HASH}`, // room v12: the create event's ID
      `!${'-_'.repeat(21)}z`,
      `!${'a'.repeat(242)}:example.com`, // 255 bytes exactly
      `!${'é'.repeat(121)}:example.com`, // 255 bytes, 134 characters
    ]) {
      assert.ok(isRoomId(ok), JSON.stringify(ok));
    }
    for (const bad of [
      '',
      '!',
      'room:example.com',
      '#alias:example.com',
      '!a\u0000b:example.com', // NUL
      '!\ud800:example.com', // a lone surrogate is no code point
      '!a:exa mple.com', // the domain is a server name
      '!a:',
      `!${'a'.repeat(243)}:example.com`, // 256 bytes
      `!${'é'.repeat(121)}a:example.com`, // 256 bytes, 135 characters
      '!a:example.com:99999',
      '!short', // no domain: must be a 43-character hash
      `!${HASH}A`,
      `!${HASH.slice(1)}+`, // not URL-safe base64
      `!${HASH.slice(1)}=`,
    ]) {
      assert.ok(!isRoomId(bad), JSON.stringify(bad));
    }
  });

  it('accepts user IDs in the historical grammar, new grammar included', () => {
    for (const ok of [
      '@alice:example.com',
      '@a-z0.9_=/+:example.com', // every character of the new grammar
      '@_bridge_123:example.com',
      '@Alice=2:localhost:8448',
      '@ünïcödé:example.com', // historical: any code point but ':' and NUL
      '@a b\u0007:example.com',
      '@:example.com', // historical: even empty
      `@${'a'.repeat(242)}:example.com`, // 255 bytes
    ])
      assert.ok(isUserId(ok), JSON.stringify(ok));
    for (const bad of [
      'alice:example.com',
      '@alice',
      '@alice:',
      '@al\u0000ice:example.com',
      '@\udc00:example.com',
      '@alice:exa_mple.com',
      `@${'a'.repeat(243)}:example.com`, // 256 bytes
    ])
      assert.ok(!isUserId(bad), JSON.stringify(bad));
  });

  it('bounds event types at 255 bytes and allows any code point in them', () => {
    assert.ok(isEventType('m.room.message'));
    assert.ok(isEventType('x'.repeat(255)));
    assert.ok(isEventType('m.room\n.message')); // the spec gives event types no grammar
    assert.ok(isEventType('com.example.😀'));
    assert.ok(!isEventType('x'.repeat(256)));
    assert.ok(!isEventType('é'.repeat(128))); // 256 bytes
    assert.ok(!isEventType(''));
    assert.ok(!isEventType('m.\ud800'));
  });

  it('bounds transaction IDs at 255 bytes and leaves them opaque', () => {
    assert.ok(isTxnId('m1700000000.0'));
    assert.ok(isTxnId('a b/c\u0001'));
    assert.ok(isTxnId('x'.repeat(255)));
    assert.ok(!isTxnId('x'.repeat(256)));
    assert.ok(!isTxnId(''));
    assert.ok(!isTxnId('é'.repeat(128)));
    assert.ok(!isTxnId('\udfff'));
  });

  it('parses server names', () => {
    for (const ok of [
      'example.com',
      'example.com:8448',
      '1.2.3.4',
      '1.2.3.4:1234',
      '[1234:5678::abcd]',
      '[1234:5678::abcd]:5678',
      '[::1]:80',
      '[::ffff:1.2.3.4]',
      'localhost:65535',
      'a'.repeat(255),
    ])
      assert.ok(isServerName(ok), ok);
    for (const bad of [
      '',
      'exa_mple.com',
      'example.com:',
      'example.com:abc',
      'example.com:65536',
      'example.com:123456',
      '[::1',
      '[not:an:ip:literal:x]',
      '[1:2:3:4:5:6:7:8:9]',
      '[]',
      'a'.repeat(256),
    ])
      assert.ok(!isServerName(bad), bad);
  });

  it('tells lone surrogates from pairs', () => {
    assert.ok(isWellFormedUnicode('a\ud83d\ude00b'));
    assert.ok(!isWellFormedUnicode('a\ud83d'));
    assert.ok(!isWellFormedUnicode('\ude00a'));
    assert.ok(!isWellFormedUnicode('\ude00\ud83d'));
  });
});
