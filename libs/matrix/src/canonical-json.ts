/**
 * Canonical JSON as the Matrix spec defines it (appendices, "Canonical JSON"): keys sorted by code point,
 * no insignificant whitespace, UTF-8, integers only in [-(2^53)+1, (2^53)-1].
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A JSON object (not null, not an array), as parsed from untrusted input: its members are still to be checked. */
export const isJsonObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * Containers (objects and arrays) a request body may nest: deep enough for any real event content; deeper input
 * is refused with M_BAD_JSON before any recursion.
 */
export const MAX_JSON_DEPTH = 128;
/**
 * The encoder's own guard against runaway recursion. Event content sits one level inside the event (and inside the
 * event-ID input), so content accepted at MAX_JSON_DEPTH must encode there too: its scalars are one level deeper.
 */
const MAX_ENCODE_DEPTH = MAX_JSON_DEPTH + 1;

export function canonicalJson(value: JsonValue): string {
  return encode(value, 0);
}

function encode(value: JsonValue, depth: number): string {
  if (depth > MAX_ENCODE_DEPTH) throw new RangeError('JSON nested too deeply');
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError('not a canonical JSON integer');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((item) => encode(item, depth + 1)).join(',')}]`;
  const keys = Object.keys(value).sort(compareCodePoints);
  return `{${keys.map((key) => `${JSON.stringify(key)}:${encode(value[key], depth + 1)}`).join(',')}}`;
}

/** Orders strings by Unicode code point; Array.prototype.sort's default orders UTF-16 code units. */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (astral code points) sort above everything in the BMP, U+E000..U+FFFF included.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

export function canonicalJsonByteLength(value: JsonValue): number {
  return Buffer.byteLength(canonicalJson(value), 'utf8');
}
