import { All, Controller, HttpCode, Param, Put, Req, UseGuards } from '@nestjs/common';
import { parseEventContent, unrecognized } from '@app/matrix';
import { AuthenticatedRequest, AuthGuard } from '../auth/auth.guard';
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
  @UseGuards(AuthGuard)
  async send(
    @Req() req: AuthenticatedRequest & RequestWithBody,
    @Param(MatrixValidationPipe) params: SendParams,
  ): Promise<{ event_id: string }> {
    const content = parseEventContent(req.rawBody ?? Buffer.alloc(0));
    return this.sends.send(req.sender, params, content, Date.now());
  }

  /** A known path with another method than PUT. */
  @All(SEND_PATHS)
  wrongMethod(): never {
    throw unrecognized(405);
  }
}
