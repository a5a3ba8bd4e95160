import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { patchSendMessages } from './produce-retry';

describe('the produce retry fix for kafkajs', () => {
  it('makes a retry wait for every request of the attempt, in the installed kafkajs', () => {
    const source = readFileSync(require.resolve('kafkajs/src/producer/sendMessages'), 'utf8');
    const patched = patchSendMessages(source);
    assert.ok(!patched.includes('await Promise.all(requests)'));
    assert.ok(patched.includes('await settleAll(requests)'));
  });

  it("is the sendMessages that kafkajs' producer uses", () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loads kafkajs after the fix, as @app/kafka does
    require('kafkajs');
    const loaded = require.cache[require.resolve('kafkajs/src/producer/sendMessages')]?.exports as
      (() => unknown) | undefined;
    assert.match(String(loaded), /settleAll\(requests\)/);
  });

  it('refuses a source it was not written for', () => {
    assert.throws(() => patchSendMessages('module.exports = () => {}'), /not the version/);
  });
});
