import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJson, compareCodePoints } from './canonical-json';

describe('canonical JSON', () => {
  // The examples of the spec's appendix on canonical JSON.
  it('sorts keys and drops whitespace', () => {
    assert.equal(canonicalJson({ one: 1, two: 'Two' }), '{"one":1,"two":"Two"}');
    assert.equal(canonicalJson({ b: '2', a: '1' }), '{"a":"1","b":"2"}');
    assert.equal(
      canonicalJson({
        auth: {
          success: true,
          mxid: '@john.doe:example.com',
          profile: {
            display_name: 'John Doe',
            three_pids: [
              { medium: 'email', address: 'john.doe@example.org' },
              { medium: 'msisdn', address: '123456789' },
            ],
          },
        },
      }),
      '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    );
  });

  it('keeps non-ASCII characters as UTF-8 and escapes only what JSON requires', () => {
    assert.equal(canonicalJson({ a: '日本語' }), '{"a":"日本語"}');
    assert.equal(canonicalJson({ 本: 2, 日: 1 }), '{"日":1,"本":2}');
    assert.equal(canonicalJson({ a: '\u200B' }), '{"a":"\u200B"}');
    assert.equal(canonicalJson({ a: '\u0000' }), '{"a":"\\u0000"}');
    assert.equal(canonicalJson({ a: null }), '{"a":null}');
  });

  it('orders keys by code point, not by UTF-16 unit', () => {
    const astral = '\u{1F600}'; // a surrogate pair in UTF-16, code point above U+FFFF
    assert.ok(compareCodePoints('\uFFFD', astral) < 0);
    assert.equal(canonicalJson({ [astral]: 1, '\uFFFD': 2 }), `{"\uFFFD":2,"${astral}":1}`);
  });

  it('refuses numbers that are not safe integers', () => {
    assert.throws(() => canonicalJson({ a: 1.5 }), RangeError);
    assert.throws(() => canonicalJson({ a: 2 ** 53 }), RangeError);
  });
});
