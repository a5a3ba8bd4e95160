import { createHash, createHmac, KeyObject } from 'node:crypto';

/** SHA-256 as URL-safe unpadded base64 (43 characters), the encoding room v4+ uses for event IDs. */
export function sha256Base64Url(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('base64url');
}

/** A 132-bit digest (22 characters): short enough for Kafka keys and memory, far from colliding. */
export function shortHash(data: string | Uint8Array): string {
  return sha256Base64Url(data).slice(0, 22);
}

/** shortHash keyed with a server secret (HMAC-SHA-256): what reaches Kafka cannot be brute-forced back to its input. */
export function keyedShortHash(key: KeyObject | Uint8Array, data: string | Uint8Array): string {
  return createHmac('sha256', key).update(data).digest('base64url').slice(0, 22);
}
