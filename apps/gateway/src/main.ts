import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { bootOrExit } from '@app/config';
import { silenceKafkajsTimerWarnings } from '@app/kafka';
import { GatewayModule } from './gateway.module';
import { answerClientErrorsWithJson } from './http/client-error';
import { matrixCors } from './http/cors.middleware';

silenceKafkajsTimerWarnings();
bootOrExit('gateway', async (config, logger) => {
  const app = await NestFactory.create<NestExpressApplication>(GatewayModule.forRoot(config), {
    bodyParser: false, // the send route reads its body raw, with Matrix' JSON rules
    logger,
  });
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(matrixCors);
  app.enableShutdownHooks();
  answerClientErrorsWithJson(app.getHttpServer());
  await app.listen(config.GATEWAY_PORT, config.HTTP_HOST);
  return `gateway listening on http://${config.HTTP_HOST}:${config.GATEWAY_PORT}`;
});
