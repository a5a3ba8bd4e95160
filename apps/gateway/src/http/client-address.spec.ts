import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientKey } from './client-address';

describe('the client key of per-client limits', () => {
  it('is an IPv4 address itself, also when mapped into IPv6', () => {
    assert.equal(clientKey('203.0.113.9'), '203.0.113.9');
    assert.equal(clientKey('::ffff:203.0.113.9'), '203.0.113.9');
  });

  it('is the /64 of an IPv6 address, however it is written', () => {
    const key = '2001:db8:0:1::/64';
    for (const address of ['2001:db8:0:1::1', '2001:db8:0:1:ffff:ffff:ffff:fffe', '2001:0db8:0000:0001:0:0:0:7']) {
      assert.equal(clientKey(address), key, address);
    }
    assert.notEqual(clientKey('2001:db8:0:2::1'), key);
    assert.equal(clientKey('::1'), '0:0:0:0::/64');
    assert.equal(clientKey('fe80::1'), 'fe80:0:0:0::/64');
  });

  it('is one key for requests without an address', () => {
    assert.equal(clientKey(undefined), 'unknown');
  });
});
