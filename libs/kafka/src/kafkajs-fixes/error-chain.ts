/**
 * An error and the ones it wraps, outermost first, at most 5 deep: kafkajs 2.2.4 nests the cause in `originalError`
 * (retries exceeded; untyped) or `cause`, and names a broker's error code in `type` (KafkaJSProtocolError).
 */
export function errorChain(error: unknown): { name?: string; type?: string }[] {
  const chain = [];
  let cause = error as { name?: string; type?: string; originalError?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; cause && depth < 5; depth++) {
    chain.push(cause);
    cause = (cause.originalError ?? cause.cause) as typeof cause;
  }
  return chain;
}
