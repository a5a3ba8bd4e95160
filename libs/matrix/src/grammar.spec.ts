import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isEventType, isRoomId, isServerName, isTxnId, isUserId } from './grammar';

describe('identifier grammars', () => {
  it('accepts room IDs of every room version, and refuses others', () => {
    for (const ok of [
      '!636q39766251:example.com',
      '!a:localhost:8448',
      '!x:[::1]:8008',
      '!x:1.2.3.4',
      `!${'A'.repeat(43)}`,
    ]) {
      assert.ok(isRoomId(ok), ok);
    }
    for (const bad of [
      '',
      '!',
      'room:example.com',
      '#alias:example.com',
      '!a b:example.com',
      '!a:exa mple.com',
      `!${'a'.repeat(250)}:example.com`,
      '!a:example.com:99999',
    ]) {
      assert.ok(!isRoomId(bad), bad);
    }
  });

  it('accepts user IDs in the historical grammar', () => {
    for (const ok of ['@alice:example.com', '@_bridge_123:example.com', '@Alice=2:localhost:8448'])
      assert.ok(isUserId(ok), ok);
    for (const bad of ['alice:example.com', '@:example.com', '@alice', '@al ice:example.com', '@alice:'])
      assert.ok(!isUserId(bad), bad);
  });

  it('bounds event types and transaction IDs at 255 bytes', () => {
    assert.ok(isEventType('m.room.message'));
    assert.ok(isEventType('x'.repeat(255)));
    assert.ok(!isEventType('x'.repeat(256)));
    assert.ok(!isEventType(''));
    assert.ok(!isEventType('m.room\n.message'));
    assert.ok(isTxnId('m1700000000.0'));
    assert.ok(!isTxnId(''));
    assert.ok(!isTxnId('é'.repeat(128)));
  });

  it('parses server names', () => {
    for (const ok of ['example.com', 'example.com:8448', '1.2.3.4', '[1234:5678::abcd]', '[::1]:80'])
      assert.ok(isServerName(ok), ok);
    for (const bad of ['', 'exa_mple.com', 'example.com:', 'example.com:abc', '[::1'])
      assert.ok(!isServerName(bad), bad);
  });
});
