import { parse } from 'node:querystring';

/** What a query value that is not percent-encoded UTF-8 decodes to: a lone surrogate, which no grammar accepts. */
const NOT_UTF8 = '\ud800';

function decodeStrictly(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return NOT_UTF8;
  }
}

/**
 * Express' `query parser`: Node's `querystring`, except that a value whose percent-encoding is not UTF-8 is not
 * silently turned into U+FFFD (which would make `?user_id=@a%ED%A0%80:example.org` a user the service never
 * named, and collapse different bad device IDs into one scope). It decodes to a lone surrogate instead, so the
 * identifier grammars (which require well-formed Unicode) answer 400 `M_INVALID_PARAM`, as for such a path.
 */
export function parseQueryStrictly(query: string): Record<string, string | string[]> {
  return parse(query, '&', '=', { decodeURIComponent: decodeStrictly }) as Record<string, string | string[]>;
}
