/**
 * The benchmark's ceiling: a minimal NestJS platform-express app serving the send route with a constant answer
 * and no Kafka, so the pipeline can be compared with what HTTP alone costs on the same machine.
 */
import 'reflect-metadata';
import { Controller, Get, HttpCode, Module, Put } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';

const EVENT_ID = `$${'A'.repeat(43)}`;

@Controller()
class CeilingController {
  @Put(['_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId'])
  @HttpCode(200)
  send(): { event_id: string } {
    return { event_id: EVENT_ID };
  }

  @Get('health/ready')
  ready(): { status: string } {
    return { status: 'ok' };
  }
}

@Module({ controllers: [CeilingController] })
class CeilingModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create(CeilingModule, { logger: ['error'] });
  await app.listen(Number(process.env.GATEWAY_PORT ?? 8010), '127.0.0.1');
}

void main();
