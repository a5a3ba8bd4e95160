import { Controller, Get, Header, Type } from '@nestjs/common';
import type { Server } from 'node:http';
import { AppConfig } from '@app/config';
import { createAppHttpServer } from './http-server';
import { registry } from './metrics';

@Controller('metrics')
export class MetricsController {
  @Get()
  @Header('Content-Type', registry.contentType)
  async metrics(): Promise<string> {
    return registry.metrics();
  }
}

/** `/metrics` is served beside the app's routes unless METRICS_PORT gives it a listener of its own. */
export function metricsControllers(config: AppConfig): Type[] {
  return config.METRICS_PORT === undefined ? [MetricsController] : [];
}

/**
 * With METRICS_PORT set, `/metrics` listens on METRICS_HOST:METRICS_PORT only, so it can stay on an internal
 * interface while the API is public. Resolves once listening (or at once without METRICS_PORT).
 */
export async function serveMetricsApart(config: AppConfig): Promise<Server | null> {
  if (config.METRICS_PORT === undefined) return null;
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
  await new Promise<void>((done, fail) =>
    server.once('error', fail).listen(config.METRICS_PORT, config.METRICS_HOST ?? config.HTTP_HOST, done),
  );
  return server;
}
