import { randomUUID } from 'node:crypto';
import { All, Controller, HttpCode, Param, Put, Req, UseGuards } from '@nestjs/common';
import { parseEventContent, unrecognized } from '@app/matrix';
import { AuthenticatedRequest, AuthGuard } from '../auth/auth.guard';
import { RateLimitGuard } from '../http/rate-limit.guard';
import { RequestWithBody } from '../http/raw-body.middleware';
import { MatrixValidationPipe } from './matrix-validation.pipe';
import { SendParams } from './send-params.dto';
import { SendService } from './send.service';

export const SEND_PATHS = [
  '_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId',
  '_matrix/client/r0/rooms/:roomId/send/:eventType/:txnId',
];

@Controller()
export class SendController {
  constructor(private readonly sends: SendService) {}

  @Put(SEND_PATHS)
  @HttpCode(200)
  @UseGuards(AuthGuard, RateLimitGuard)
  async send(
    @Req() req: AuthenticatedRequest & RequestWithBody,
    @Param(MatrixValidationPipe) params: SendParams,
  ): Promise<{ event_id: string }> {
    const content = parseEventContent(req.rawBody ?? Buffer.alloc(0));
    const { sender, originServerTs } = req.auth;
    return this.sends.send(
      sender,
      params,
      content,
      originServerTs ?? Date.now(),
      typeof req.id === 'string' ? req.id : randomUUID(),
    );
  }

  /**
   * A known path with another method than PUT: 405, unless the request carries a body that is not an event's
   * content, which is the first thing wrong with it (Complement's TestJson POSTs such bodies and expects 400).
   */
  @All(SEND_PATHS)
  wrongMethod(@Req() req: RequestWithBody): never {
    if (req.rawBody && req.rawBody.length > 0) parseEventContent(req.rawBody);
    throw unrecognized(405);
  }
}
