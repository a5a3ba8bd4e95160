import type { Server, ServerOptions } from 'node:http';
import { createServer } from 'node:http';
import { ExpressAdapter } from '@nestjs/platform-express';
import { AppConfig } from '@app/config';

/** How often Node checks connections against the headers and request deadlines (its default is 30 s). */
const DEADLINE_CHECK_MS = 1000;

/**
 * The HTTP settings every server of the apps uses instead of Node's defaults (5 s keep-alive, shorter than load
 * balancers' idle timeouts; 60 s for headers; 300 s for a request; no connection cap): HTTP_KEEP_ALIVE_TIMEOUT_MS,
 * HTTP_HEADERS_TIMEOUT_MS, HTTP_REQUEST_TIMEOUT_MS (headers and body received, from the first byte), checked every
 * second. Past a deadline Node answers 408 and closes the connection.
 */
export function httpServerOptions(config: AppConfig): ServerOptions {
  return {
    keepAliveTimeout: config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    headersTimeout: config.HTTP_HEADERS_TIMEOUT_MS,
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    connectionsCheckingInterval: DEADLINE_CHECK_MS,
  };
}

/** A plain Node HTTP server with the apps' settings, and at most HTTP_MAX_CONNECTIONS connections (more dropped). */
export function createAppHttpServer(config: AppConfig, handler: Parameters<typeof createServer>[1]): Server {
  const server = createServer(httpServerOptions(config), handler);
  server.maxConnections = config.HTTP_MAX_CONNECTIONS;
  return server;
}

/** Nest's Express adapter, creating its server with the apps' HTTP settings (Nest's own uses Node's defaults). */
export class AppExpressAdapter extends ExpressAdapter {
  constructor(private readonly config: AppConfig) {
    super();
  }

  override initHttpServer(options: Parameters<ExpressAdapter['initHttpServer']>[0]): void {
    if (options?.httpsOptions) throw new Error('the apps serve plain HTTP; TLS ends at the load balancer');
    const server = createAppHttpServer(this.config, this.getInstance());
    this.setHttpServer(server);
  }
}
