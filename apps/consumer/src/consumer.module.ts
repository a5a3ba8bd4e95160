import { DynamicModule, Module } from '@nestjs/common';
import { Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import { AppConfig, ConfigModule, kafkaConnection } from '@app/config';
import { createKafka } from '@app/kafka';
import { HealthController, loggingModule, observeKafkaRequests, Readiness, TracingShutdown } from '@app/observability';
import { AnnotationStage } from './annotations/annotation-stage';
import { PipelineService } from './pipeline.service';
import { SendStage } from './send/send-stage';
import { ReplyPublisher } from './stage/reply-publisher';
import { StateBudget } from './store/state-budget';

@Module({})
export class ConsumerModule {
  static forRoot(config: AppConfig, logger: Logger): DynamicModule {
    return {
      module: ConsumerModule,
      imports: [ConfigModule.forRoot(config), loggingModule(logger)],
      controllers: [HealthController],
      providers: [
        {
          provide: Kafka,
          inject: [AppConfig],
          useFactory: (c: AppConfig) =>
            createKafka(kafkaConnection(c), `${c.KAFKA_CLIENT_ID}-consumer`, observeKafkaRequests),
        },
        {
          provide: StateBudget,
          inject: [AppConfig],
          useFactory: (c: AppConfig) =>
            new StateBudget(c.STATE_MAX_ENTRIES, c.STATE_DISK_BUDGET_BYTES, c.STATE_MAX_HELD_ANNOTATIONS),
        },
        { provide: SendStage, inject: [AppConfig], useFactory: SendStage.fromConfig },
        { provide: AnnotationStage, inject: [AppConfig], useFactory: AnnotationStage.fromConfig },
        ReplyPublisher,
        TracingShutdown,
        PipelineService,
        { provide: Readiness, useExisting: PipelineService },
      ],
    };
  }
}
