import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig, ConfigModule } from '@app/config';
import { HealthController } from './health/health.controller';
import { PipelineService } from './processing/pipeline.service';

@Module({})
export class ConsumerModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: ConsumerModule,
      imports: [ConfigModule.forRoot(config)],
      controllers: [HealthController],
      providers: [PipelineService],
    };
  }
}
