import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { SenderRateLimit } from '../http/rate-limit.guard';
import { BacklogMonitor } from './backlog-monitor';
import { RequestReplyClient } from './request-reply-client';
import { scopeHasherProvider } from './scope-hasher';
import { SendController } from './send.controller';
import { SendService } from './send.service';

/** The send endpoint: authentication, rate limits, the body, and the round trip through Kafka. */
@Module({
  imports: [AuthModule],
  controllers: [SendController],
  providers: [RequestReplyClient, BacklogMonitor, SendService, scopeHasherProvider, SenderRateLimit],
  exports: [SendService],
})
export class SendModule {}
