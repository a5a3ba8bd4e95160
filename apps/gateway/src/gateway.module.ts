import { DynamicModule, MiddlewareConsumer, Module, NestModule, RequestMethod } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import type { Logger } from 'pino';
import { AppConfig, ConfigModule } from '@app/config';
import { loggingModule, metricsControllers } from '@app/observability';
import { AuthModule } from './auth/auth.module';
import { HealthController } from './health/health.controller';
import { MatrixExceptionFilter } from './http/matrix-exception.filter';
import { RateLimitGuard } from './http/rate-limit.guard';
import { RawBodyMiddleware } from './http/raw-body.middleware';
import { CommandBus } from './send/command-bus';
import { SEND_PATHS, SendController } from './send/send.controller';
import { SendService } from './send/send.service';
import { scopeHasherProvider } from './send/scope-hasher';

@Module({})
export class GatewayModule implements NestModule {
  static forRoot(config: AppConfig, logger: Logger): DynamicModule {
    return {
      module: GatewayModule,
      imports: [ConfigModule.forRoot(config), loggingModule(logger), AuthModule],
      controllers: [SendController, HealthController, ...metricsControllers(config)],
      providers: [CommandBus, SendService, scopeHasherProvider, RateLimitGuard, { provide: APP_FILTER, useClass: MatrixExceptionFilter }],
    };
  }

  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(RawBodyMiddleware).forRoutes(...SEND_PATHS.map((path) => ({ path, method: RequestMethod.ALL })));
  }
}
