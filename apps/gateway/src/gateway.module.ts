import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import type { Logger } from 'pino';
import { AppConfig, ConfigModule } from '@app/config';
import { HealthController, loggingModule, Readiness, TracingShutdown } from '@app/observability';
import { MatrixExceptionFilter } from './http/matrix-exception.filter';
import { SendModule } from './send/send.module';
import { SendService } from './send/send.service';

@Module({})
export class GatewayModule {
  static forRoot(config: AppConfig, logger: Logger): DynamicModule {
    return {
      module: GatewayModule,
      imports: [ConfigModule.forRoot(config), loggingModule(logger), SendModule],
      controllers: [HealthController],
      providers: [
        { provide: Readiness, useExisting: SendService },
        { provide: APP_FILTER, useClass: MatrixExceptionFilter },
        TracingShutdown,
      ],
    };
  }
}
