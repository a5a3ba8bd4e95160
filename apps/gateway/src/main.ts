// First, before http and kafkajs load: tracing, when OTEL_* variables ask for it.
import { startTracing } from '../../../libs/observability/src/tracing';
startTracing('matrix-send-gateway');

import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { silenceKafkajsTimerWarnings } from '@app/kafka';
import { assignRequestIds, bootOrExit, usePino } from '@app/observability';
import { GatewayModule } from './gateway.module';
import { answerClientErrorsWithJson } from './http/client-error';
import { matrixCors } from './http/cors.middleware';
import { countRequests } from './http/request-metrics.middleware';

silenceKafkajsTimerWarnings();
bootOrExit('gateway', async (config, logger) => {
  const app = await NestFactory.create<NestExpressApplication>(GatewayModule.forRoot(config, logger), {
    bodyParser: false, // the send route reads its body raw, with Matrix' JSON rules
    bufferLogs: true,
  });
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(assignRequestIds, countRequests, matrixCors);
  usePino(app);
  app.enableShutdownHooks();
  answerClientErrorsWithJson(app.getHttpServer());
  await app.listen(config.GATEWAY_PORT, config.HTTP_HOST);
  return { ready: `gateway listening on http://${config.HTTP_HOST}:${config.GATEWAY_PORT}` };
});
