import { AppProcess } from './pipeline';

/** Node option that opens an app's inspector on a free loopback port, so `retainedHeapBytes` can reach it. */
export const INSPECT_ON_FREE_PORT = '--inspect=127.0.0.1:0';

/**
 * The bytes an app's V8 heap retains: a full collection through the app's inspector (Chrome DevTools protocol,
 * `HeapProfiler.collectGarbage`), then `Runtime.getHeapUsage`. Unlike used heap sampled at random moments, which
 * carries garbage of any age, this counts only what is reachable. The app must run with `INSPECT_ON_FREE_PORT`.
 */
export async function retainedHeapBytes(app: AppProcess): Promise<number> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(app.output.join(''))?.[1];
  if (!url) throw new Error(`${app.name} runs without its inspector (start it with ${INSPECT_ON_FREE_PORT})`);
  const socket = new WebSocket(url);
  await new Promise<void>((done, fail) => {
    socket.addEventListener('open', () => done(), { once: true });
    socket.addEventListener('error', () => fail(new Error(`cannot reach the inspector at ${url}`)), { once: true });
  });
  let nextId = 0;
  const call = (method: string): Promise<Record<string, unknown>> =>
    new Promise((done, fail) => {
      const id = ++nextId;
      const onMessage = (event: MessageEvent): void => {
        const message = JSON.parse(String(event.data)) as {
          id?: number;
          result?: Record<string, unknown>;
          error?: unknown;
        };
        if (message.id !== id) return;
        socket.removeEventListener('message', onMessage);
        if (message.error) fail(new Error(`${method}: ${JSON.stringify(message.error)}`));
        else done(message.result ?? {});
      };
      socket.addEventListener('message', onMessage);
      socket.send(JSON.stringify({ id, method }));
    });
  try {
    // Twice: objects with finalizers (weak references, native handles) are freed only by the collection after.
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');
    const { usedSize } = await call('Runtime.getHeapUsage');
    return Number(usedSize);
  } finally {
    socket.close();
  }
}
