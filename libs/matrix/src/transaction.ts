import type { KeyObject } from 'node:crypto';
import { keyedShortHash, shortHash } from './hash';

/**
 * Who is sending: the authenticated identity, reduced to what transaction scope and the event need.
 * Never carries the access token itself.
 */
export interface Sender {
  userId: string;
  deviceId?: string;
  /** Set when an application service sends (as itself or a masqueraded user). */
  appserviceId?: string;
  /** For a token that maps to no device: a hash of the token, which is then the scope. */
  tokenHash?: string;
}

/**
 * The scope of a transaction ID (spec: "Transaction identifiers"): the device. An application service's scope
 * is the service, the masqueraded user and the device if given. A token with no device is its own scope.
 */
export function transactionScope(sender: Sender): string {
  if (sender.appserviceId !== undefined) {
    return JSON.stringify(['as', sender.appserviceId, sender.userId, sender.deviceId ?? null]);
  }
  if (sender.deviceId !== undefined) return JSON.stringify(['device', sender.userId, sender.deviceId]);
  if (sender.tokenHash !== undefined) return JSON.stringify(['token', sender.tokenHash]);
  return JSON.stringify(['user', sender.userId]);
}

/**
 * The scope as it travels in Kafka keys, commands and event headers: keyed with the server's secret, since a
 * device-less scope is derived from the access token, and a short token's bare hash could be reversed.
 */
export function scopeHash(sender: Sender, secret: KeyObject | Uint8Array): string {
  return keyedShortHash(secret, transactionScope(sender));
}

/** A transaction is `(scope, roomId, eventType, txnId)`: the same txnId in another room is another transaction. */
export function transactionIdentity(scopeHash: string, roomId: string, eventType: string, txnId: string): string {
  return shortHash(JSON.stringify([scopeHash, roomId, eventType, txnId]));
}
