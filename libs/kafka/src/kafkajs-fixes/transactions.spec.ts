import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { patchEosManager } from './transactions';

describe('the transaction manager fixes for kafkajs', () => {
  it('looks each coordinator up once, in the installed kafkajs', () => {
    const patched = patchEosManager(readFileSync(require.resolve('kafkajs/src/producer/eosManager'), 'utf8'));
    assert.equal(patched.match(/cluster\.findGroupCoordinator\(/g)?.length, 1, 'one lookup, behind the cache');
    assert.match(patched, /const rememberedCoordinator/);
    assert.match(
      patched,
      /await untilNotConcurrent\(\(\) =>\s+transactionCoordinator\.addOffsetsToTxn/,
      'AddOffsetsToTxn retried',
    );
  });

  it("is the eosManager that kafkajs' producer uses", () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loads kafkajs after the fix, as @app/kafka does
    require('kafkajs');
    const loaded = require.cache[require.resolve('kafkajs/src/producer/eosManager')];
    assert.ok(loaded, 'loaded');
    assert.match(readFileSync(require.resolve('kafkajs/src/producer/eosManager'), 'utf8'), /findGroupCoordinator/);
    assert.match(String((loaded.exports as () => unknown).toString()), /findCoordinator/);
  });

  it('refuses a source it was not written for', () => {
    assert.throws(() => patchEosManager('module.exports = () => {}'), /not the version/);
  });
});
