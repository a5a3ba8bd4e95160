import { JsonObject, MAX_JSON_DEPTH } from './canonical-json';
import { badJson, badJsonValue, notJson } from './errors';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses an untrusted request body into event content, with the rules of room v6+ canonical JSON:
 * not UTF-8 or not JSON → M_NOT_JSON; JSON but not an object, or with a float, or an integer outside
 * ±(2^53−1), or nested absurdly deep → M_BAD_JSON.
 */
export function parseEventContent(body: Uint8Array): JsonObject {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw notJson('Content not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw notJson('Content not JSON.');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw badJson('Content must be a JSON object.');
  }
  checkNumbersAndDepth(text);
  return value as JsonObject;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * JSON.parse has already accepted the text, so this scan only needs to find number tokens outside strings
 * (JSON.parse would silently round `1.0` to 1 and 2^53 to a neighbour) and to measure nesting.
 */
function checkNumbersAndDepth(text: string): void {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === 0x5c /* \ */) i++;
        else if (s === 0x22) break;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > MAX_JSON_DEPTH) throw badJson('JSON nested too deeply');
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1;
      while (end < text.length && /[0-9.eE+-]/.test(text[end])) end++;
      const token = text.slice(i, end);
      if (/[.eE]/.test(token)) throw badJsonValue('Bad JSON value: float values are not allowed', token);
      const digits = token.startsWith('-') ? token.slice(1) : token;
      // JSON has no leading zeros: more than 16 digits is out of range, with no BigInt of 100,000 digits to build
      if (digits.length > 16 || BigInt(digits) > MAX_SAFE)
        throw badJsonValue('Bad JSON value: integer out of range', token);
      i = end - 1;
    }
  }
}
