import type { Server } from 'node:http';
import { AppConfig } from '@app/config';
import { createAppHttpServer } from './http-server';
import { registry } from './metrics';

/**
 * Serves `/metrics` on a listener of its own (GATEWAY_METRICS_PORT, CONSUMER_METRICS_PORT on METRICS_HOST, loopback
 * by default), never beside the API: what a deployment publishes (a load balancer, compose's nginx) never shows
 * it. Resolves once listening; rejects if the port cannot be bound.
 */
export async function serveMetrics(config: AppConfig, port: number): Promise<Server> {
  const host = config.METRICS_HOST;
  const server = createAppHttpServer(config, (req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  server.unref(); // never what keeps a stopping process alive
  await new Promise<void>((done, fail) => server.once('error', fail).listen(port, host, done));
  return server;
}
