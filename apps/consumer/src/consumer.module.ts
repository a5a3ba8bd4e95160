import { DynamicModule, Module } from '@nestjs/common';
import type { Logger } from 'pino';
import { AppConfig, ConfigModule } from '@app/config';
import { loggingModule, metricsControllers } from '@app/observability';
import { HealthController } from './health/health.controller';
import { PipelineService } from './processing/pipeline.service';

@Module({})
export class ConsumerModule {
  static forRoot(config: AppConfig, logger: Logger): DynamicModule {
    return {
      module: ConsumerModule,
      imports: [ConfigModule.forRoot(config), loggingModule(logger)],
      controllers: [HealthController, ...metricsControllers(config)],
      providers: [PipelineService],
    };
  }
}
