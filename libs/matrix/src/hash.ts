import { createHash } from 'node:crypto';

/** SHA-256 as URL-safe unpadded base64 (43 characters), the encoding room v4+ uses for event IDs. */
export function sha256Base64Url(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('base64url');
}

/** A 132-bit digest (22 characters): short enough for Kafka keys and memory, far from colliding. */
export function shortHash(data: string | Uint8Array): string {
  return sha256Base64Url(data).slice(0, 22);
}
