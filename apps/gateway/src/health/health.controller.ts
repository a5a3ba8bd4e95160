import { Controller, Get, HttpException } from '@nestjs/common';
import { reportReadiness } from '@app/observability';
import { CommandBus } from '../send/command-bus';
import { SendService } from '../send/send.service';

/**
 * Liveness: the process answers. Readiness: Kafka is connected, this instance's reply channel is in place, and it
 * is not stopping.
 */
@Controller('health')
export class HealthController {
  constructor(
    private readonly bus: CommandBus,
    private readonly sends: SendService,
  ) {
    reportReadiness('gateway', () => this.isReady);
  }

  private get isReady(): boolean {
    return this.bus.isReady && this.sends.isAccepting;
  }

  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('ready')
  ready(): { status: 'ok' } {
    if (!this.isReady) throw new HttpException({ status: 'unavailable' }, 503);
    return { status: 'ok' };
  }
}
