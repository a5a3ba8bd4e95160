// First, before http and kafkajs load: tracing, when OTEL_* variables ask for it.
import { startTracing } from '../../../libs/observability/src/tracing';
startTracing('matrix-send-consumer');

import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppConfig } from '@app/config';
import { silenceKafkajsTimerWarnings } from '@app/kafka';
import { AppExpressAdapter, bootOrExit, usePino } from '@app/observability';
import { ConsumerModule } from './consumer.module';

silenceKafkajsTimerWarnings();
bootOrExit({ name: 'consumer', metricsPort: (c: AppConfig) => c.CONSUMER_METRICS_PORT }, async (config, logger) => {
  const app = await NestFactory.create(ConsumerModule.forRoot(config, logger), new AppExpressAdapter(config), {
    bufferLogs: true,
  });
  usePino(app);
  app.enableShutdownHooks();
  await app.listen(config.CONSUMER_PORT, config.HTTP_HOST);
  return { ready: `consumer health on http://${config.HTTP_HOST}:${config.CONSUMER_PORT}/health/ready` };
});
