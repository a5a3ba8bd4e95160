import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import '.'; // every fix, in the order the apps load them
import { patchRequestQueue } from './request-queue-timer';

describe('the request queue fix for kafkajs', () => {
  it('answers a request without a negative-timeout warning', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the module as kafkajs loads it, after the fix
    const RequestQueue = require('kafkajs/src/network/requestQueue') as new (options: object) => {
      scheduleCheckPendingRequests(): void;
      destroy(): void;
    };
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      const queue = new RequestQueue({ maxInFlightRequests: 1, requestTimeout: 1000, clientId: 't', broker: 'b' });
      queue.scheduleCheckPendingRequests(); // what kafkajs does after each response, unthrottled and idle
      await new Promise((done) => setTimeout(done, 20));
      queue.destroy();
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(warnings, []);
  });

  it('refuses a source it was not written for', () => {
    assert.throws(() => patchRequestQueue('module.exports = class {}'), /not the version/);
  });
});
