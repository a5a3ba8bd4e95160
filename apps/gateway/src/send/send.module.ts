import { MiddlewareConsumer, Module, NestModule, RequestMethod } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { RateLimitGuard } from '../http/rate-limit.guard';
import { RawBodyMiddleware } from '../http/raw-body.middleware';
import { BacklogMonitor } from './backlog-monitor';
import { RequestReplyClient } from './request-reply-client';
import { scopeHasherProvider } from './scope-hasher';
import { SEND_PATHS, SendController } from './send.controller';
import { SendService } from './send.service';

/** The send endpoint: authentication, rate limits, the raw body, and the round trip through Kafka. */
@Module({
  imports: [AuthModule],
  controllers: [SendController],
  providers: [RequestReplyClient, BacklogMonitor, SendService, scopeHasherProvider, RateLimitGuard],
  exports: [SendService],
})
export class SendModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    // Bytes, whatever Content-Type says: the send handler parses them with Matrix' own JSON rules.
    consumer.apply(RawBodyMiddleware).forRoutes(...SEND_PATHS.map((path) => ({ path, method: RequestMethod.ALL })));
  }
}
