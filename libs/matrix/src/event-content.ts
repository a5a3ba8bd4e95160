import { JsonObject, MAX_JSON_DEPTH } from './canonical-json';
import { badJson, badJsonValue, notJson } from './errors';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Event content parsed from a request body, with an estimate of the heap it holds. */
export interface ParsedContent {
  content: JsonObject;
  /**
   * Bytes of heap the parsed value takes, estimated from its shape (measured on Node 24: an empty array is 40
   * bytes, an empty object 64, a value slot 8, a short string 32 plus its characters), rounded up: 64 per object or
   * array, 32 per string (keys included), 16 per number or literal, 2 per character of the text. A 64 KB body of
   * `[[],[],…]` is about 1.4 MB.
   */
  heapBytes: number;
}

/**
 * Parses an untrusted request body into event content, with the rules of room v6+ canonical JSON:
 * not UTF-8 or not JSON → M_NOT_JSON; JSON but not an object, or with a float, or an integer outside
 * ±(2^53−1), or nested absurdly deep, or with a lone surrogate escape (`"\ud800"`) in a string or key → M_BAD_JSON.
 */
export function parseEventContent(body: Uint8Array): JsonObject {
  return parseEventContentMeasured(body).content;
}

/** parseEventContent, also estimating the heap the content holds while a request waits (see ParsedContent). */
export function parseEventContentMeasured(body: Uint8Array): ParsedContent {
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
  const { containers, strings, others } = checkCanonicalJsonText(text);
  return { content: value as JsonObject, heapBytes: 64 * containers + 32 * strings + 16 * others + 2 * text.length };
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const loneSurrogate = () => badJson('Bad JSON value: a string holds half a surrogate pair alone, which is not Unicode');

/**
 * JSON.parse has already accepted the text, so this scan only needs to find number tokens outside strings
 * (JSON.parse would silently round `1.0` to 1 and 2^53 to a neighbour), to measure nesting, to find `\u`
 * escapes of half a surrogate pair without the other half, and to count the values (objects and arrays, strings,
 * numbers and literals) for the heap estimate. UTF-8 text cannot hold a lone surrogate, only such an escape can; a
 * string holding one has no UTF-8 form, so the event would have no canonical JSON and readers of the log in other
 * languages would refuse the record. Like numbers, the text is judged, duplicate keys' values included.
 */
function checkCanonicalJsonText(text: string): { containers: number; strings: number; others: number } {
  let depth = 0;
  let containers = 0;
  let strings = 0;
  let others = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      strings++;
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === 0x22) break;
        if (s !== 0x5c /* \ */) continue;
        if (text.charCodeAt(i + 1) !== 0x75 /* u */) {
          i++;
          continue;
        }
        const unit = parseInt(text.slice(i + 2, i + 6), 16);
        if (unit >= 0xd800 && unit <= 0xdbff && text.startsWith('\\u', i + 6)) {
          const low = parseInt(text.slice(i + 8, i + 12), 16);
          if (low < 0xdc00 || low > 0xdfff) throw loneSurrogate();
          i += 11;
        } else if (unit >= 0xd800 && unit <= 0xdfff) {
          throw loneSurrogate();
        } else {
          i += 5;
        }
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > MAX_JSON_DEPTH) throw badJson('JSON nested too deeply');
      containers++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x74 /* t */ || c === 0x66 /* f */ || c === 0x6e /* n */) {
      others++; // true, false, null: JSON.parse accepted the text, so these letters start a literal
      i += c === 0x66 ? 4 : 3;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      others++;
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
  return { containers, strings, others };
}
