import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDeviceId, MAX_DEVICE_ID_BYTES } from './grammar';

describe('device ID grammar', () => {
  it('accepts any device ID a homeserver can have stored, up to 255 bytes', () => {
    for (const ok of [
      'ABCDEFGHIJ',
      'mautrix-whatsapp_1',
      'Element (Firefox)',
      'appareil-é',
      'tab\there',
      '😀',
      'x'.repeat(255),
      'é'.repeat(127),
    ])
      assert.ok(isDeviceId(ok), ok);
    assert.equal(Buffer.byteLength('é'.repeat(127)), 254, 'premise: two bytes a character');
  });

  it(`refuses the empty string, more than ${MAX_DEVICE_ID_BYTES} bytes, NUL and lone surrogates`, () => {
    for (const bad of ['', 'x'.repeat(256), 'é'.repeat(128), 'x'.repeat(16_000), 'DEV\u0000', '\ud800DEV', 'DEV\udfff'])
      assert.ok(!isDeviceId(bad), JSON.stringify(bad.slice(0, 20)));
  });
});
