// First, before http and kafkajs load: tracing, when OTEL_* variables ask for it.
import { startTracing } from '../../../libs/observability/src/tracing';
startTracing('matrix-send-gateway');

import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { AppConfig, loadScopeHashSecret } from '@app/config';
import { silenceKafkajsTimerWarnings } from '@app/kafka';
import { AppExpressAdapter, assignRequestIds, bootOrExit, usePino } from '@app/observability';
import { checkAuthFiles } from './auth/auth.module';
import { GatewayModule } from './gateway.module';
import { answerClientErrorsWithJson } from './http/client-error';
import { matrixCors } from './http/cors.middleware';
import { parseQueryStrictly } from './http/query-parser';
import { countRequests } from './http/request-metrics.middleware';

silenceKafkajsTimerWarnings();
const gateway = {
  name: 'gateway',
  metricsPort: (c: AppConfig) => c.GATEWAY_METRICS_PORT,
  // Without the deployment's scope-hash key a gateway would hash scopes apart from the others: no key, no start.
  // The token file and registrations are read here too, so that a refused one is one line, not a Nest stack trace.
  requires: (config: AppConfig) => {
    loadScopeHashSecret(config);
    checkAuthFiles(config);
  },
};
bootOrExit(gateway, async (config, logger) => {
  const app = await NestFactory.create<NestExpressApplication>(
    GatewayModule.forRoot(config, logger),
    new AppExpressAdapter(config),
    {
      bodyParser: false, // the send route reads its body raw, with Matrix' JSON rules
      bufferLogs: true,
    },
  );
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', parseQueryStrictly);
  // req.ip: the connection's address, or X-Forwarded-For's through the proxies the operator trusts (TRUSTED_PROXIES)
  app.set('trust proxy', config.TRUSTED_PROXIES?.split(',').map((entry) => entry.trim()) ?? false);
  app.use(assignRequestIds, countRequests, matrixCors);
  usePino(app);
  app.enableShutdownHooks();
  answerClientErrorsWithJson(app.getHttpServer());
  await app.listen(config.GATEWAY_PORT, config.HTTP_HOST);
  return { ready: `gateway listening on http://${config.HTTP_HOST}:${config.GATEWAY_PORT}` };
});
