import { Controller, Get, HttpException } from '@nestjs/common';
import { CommandBus } from '../send/command-bus';

/** Liveness: the process answers. Readiness: Kafka is connected and this instance's reply channel is in place. */
@Controller('health')
export class HealthController {
  constructor(private readonly bus: CommandBus) {}

  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('ready')
  ready(): { status: 'ok' } {
    if (!this.bus.isReady) throw new HttpException({ status: 'unavailable' }, 503);
    return { status: 'ok' };
  }
}
