import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { bootOrExit } from '@app/config';
import { silenceKafkajsTimerWarnings } from '@app/kafka';
import { ConsumerModule } from './consumer.module';

silenceKafkajsTimerWarnings();
bootOrExit('consumer', async (config, logger) => {
  const app = await NestFactory.create(ConsumerModule.forRoot(config), { logger });
  app.enableShutdownHooks();
  await app.listen(config.CONSUMER_PORT, config.HTTP_HOST);
  return `consumer health on http://${config.HTTP_HOST}:${config.CONSUMER_PORT}/health/ready`;
});
