/**
 * kafkajs 2.2.4 sends a produce to each broker that leads a partition of the request, waits with Promise.all, and on
 * a retriable error from one broker retries the whole send at once, while the requests to the other brokers may still
 * be in flight. Those are then sent again with new sequence numbers, so the broker appends them twice: inside a
 * transaction, both copies commit. Found by the three-broker failover test (the Java client read the same events
 * twice); a single broker never shows it. This rewrites kafkajs' sendMessages so that a retry waits until every
 * request of the attempt has settled (those that succeeded are then skipped, as kafkajs intends). It must run before
 * kafkajs is loaded, like the read_committed fix beside it.
 */
import { readFileSync } from 'node:fs';
import Module from 'node:module';
import { dirname } from 'node:path';

const SEND_MESSAGES = require.resolve('kafkajs/src/producer/sendMessages');
const PRODUCER = require.resolve('kafkajs/src/producer');
const RACE = 'await Promise.all(requests)';

/** kafkajs' source with the retry waiting for the whole attempt; throws if the source is not the expected one. */
export function patchSendMessages(source: string): string {
  if (source.split(RACE).length !== 2) throw new Error('produce-retry-fix: kafkajs sendMessages is not the version this fix was written for');
  const settle =
    'const settleAll = async promises => {\n' +
    "  const failed = (await Promise.allSettled(promises)).find(result => result.status === 'rejected')\n" +
    '  if (failed) throw failed.reason\n' +
    '}\n';
  return settle + source.replace(RACE, 'await settleAll(requests)');
}

if (require.cache[PRODUCER]) throw new Error('produce-retry-fix must be loaded before kafkajs (import @app/kafka first)');
const patched = new Module(SEND_MESSAGES, module);
patched.filename = SEND_MESSAGES;
patched.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(dirname(SEND_MESSAGES));
(patched as unknown as { _compile(source: string, filename: string): void })._compile(patchSendMessages(readFileSync(SEND_MESSAGES, 'utf8')), SEND_MESSAGES);
patched.loaded = true;
require.cache[SEND_MESSAGES] = patched;
