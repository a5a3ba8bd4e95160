import { createServer, Server } from 'node:http';

/** A homeserver that only answers /account/whoami, for the delegation tests. */
export class FakeHomeserver {
  whoamiCalls = 0;
  private readonly server: Server;

  /** `unknownDelayMs`: how long an unknown token waits for its 401 (a slow homeserver, for flood tests). */
  constructor(
    private readonly tokens: Record<string, { status: number; body: unknown; delayMs?: number }>,
    unknownDelayMs = 0,
  ) {
    this.server = createServer((req, res) => {
      if (!req.url?.startsWith('/_matrix/client/v3/account/whoami')) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"errcode":"M_UNRECOGNIZED","error":"nope"}');
        return;
      }
      this.whoamiCalls++;
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      const answer = this.tokens[token] ?? {
        status: 401,
        body: { errcode: 'M_UNKNOWN_TOKEN', error: 'Unknown token' },
        delayMs: unknownDelayMs,
      };
      setTimeout(
        () => res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body)),
        answer.delayMs ?? 0,
      );
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((done) => this.server.listen(0, '127.0.0.1', done));
    const { port } = this.server.address() as { port: number };
    return `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((done) => this.server.close(done));
  }
}
