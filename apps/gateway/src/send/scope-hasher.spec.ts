import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { scopeHash } from '@app/matrix';
import { ScopeHasher } from './scope-hasher';

const secret = randomBytes(32);
const bridgeUser = (i: number, device: string) => ({
  userId: `@bridge_${i}:example.org`,
  appserviceId: 'bridge',
  deviceId: device,
});

describe('scope hasher', () => {
  it('keeps the scopes it remembers under its byte bound, however long the devices, forgetting the oldest', () => {
    const maxBytes = 1_000_000;
    const hasher = new ScopeHasher(secret, maxBytes);
    const longDevice = 'D'.repeat(255);
    for (let i = 0; i < 10_000; i++) hasher.hash(bridgeUser(i, longDevice));
    assert.ok(hasher.size > 100, `premise: it remembers (${hasher.size} scopes)`);
    assert.ok(hasher.size < 10_000, `premise: the bound forgot some (${hasher.size} scopes)`);
    assert.ok(hasher.bytes <= maxBytes, `${hasher.bytes} bytes`);
    assert.ok(hasher.bytes > maxBytes - 2_000, 'it fills up to the bound, less than one entry short');
  });

  it('gives the same hash whether it remembers the scope or has forgotten it', () => {
    const hasher = new ScopeHasher(secret, 65_536);
    const first = bridgeUser(0, 'DEV');
    const before = hasher.hash(first);
    for (let i = 1; i < 1000; i++) hasher.hash(bridgeUser(i, 'DEV'));
    assert.equal(hasher.hash(first), before);
    assert.equal(before, scopeHash(first, secret));
  });
});
