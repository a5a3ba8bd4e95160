import { Controller, Get, HttpException } from '@nestjs/common';
import { PipelineService } from '../processing/pipeline.service';

/** Liveness: the process answers. Readiness: in the consumer group, with every assigned partition restored. */
@Controller('health')
export class HealthController {
  constructor(private readonly processor: PipelineService) {}

  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('ready')
  ready(): { status: 'ok' } {
    if (!this.processor.isReady) throw new HttpException({ status: 'unavailable' }, 503);
    return { status: 'ok' };
  }
}
