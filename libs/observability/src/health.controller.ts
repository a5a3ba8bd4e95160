import { Controller, Get, HttpException } from '@nestjs/common';

/** What an app's readiness depends on; each app provides it (`{ provide: Readiness, useExisting: … }`). */
export abstract class Readiness {
  abstract readonly isReady: boolean;
}

/**
 * Liveness: the process answers. Readiness: what the app's Readiness says (Kafka connected, partitions restored,
 * not stopping). Orchestrators restart on the first and route on the second.
 */
@Controller('health')
export class HealthController {
  constructor(private readonly readiness: Readiness) {}

  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('ready')
  ready(): { status: 'ok' } {
    if (!this.readiness.isReady) throw new HttpException({ status: 'unavailable' }, 503);
    return { status: 'ok' };
  }
}
