import { applyEdits, replaceKafkajsModule } from './source-patch';

/**
 * kafkajs 2.2.4 schedules its check of a connection's pending requests at `throttledUntil - Date.now()` when it is
 * not throttled and nothing is pending: `-1 - Date.now()`, a negative delay that Node clamps to 1 ms and warns about
 * (`TimeoutNegativeWarning`) in every process that answers a request. The check runs after 1 ms as before; only the
 * delay is given as Node takes it, so operators' logs carry no warning that means nothing.
 */
const REQUEST_QUEUE = require.resolve('kafkajs/src/network/requestQueue');

export function patchRequestQueue(source: string): string {
  return applyEdits('request-queue-timer', source, [['      }, scheduleAt)\n', '      }, Math.max(scheduleAt, 1))\n']]);
}

replaceKafkajsModule('request-queue-timer', REQUEST_QUEUE, patchRequestQueue);
