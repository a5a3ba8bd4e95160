import { randomUUID } from 'node:crypto';
import { All, Controller, HttpCode, Param, Put, Req, UseGuards } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { JsonObject, parseEventContent, parseEventContentMeasured, unrecognized } from '@app/matrix';
import { AuthenticatedRequest, AuthGuard } from '../auth/auth.guard';
import { Authenticated, AuthService } from '../auth/auth.service';
import { RateLimitGuard, SenderRateLimit } from '../http/rate-limit.guard';
import { hasBody, readBody } from '../http/request-body';
import { MatrixValidationPipe } from './matrix-validation.pipe';
import { SendParams } from './send-params.dto';
import { SendService } from './send.service';

export const SEND_PATHS = [
  '_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId',
  '_matrix/client/r0/rooms/:roomId/send/:eventType/:txnId',
];

/**
 * The send route. Method, credentials, rate limit and path are decided on the headers alone; only then is the
 * body read (it is never read for a request that is refused).
 */
@Controller()
export class SendController {
  constructor(
    private readonly sends: SendService,
    private readonly auth: AuthService,
    private readonly config: AppConfig,
    private readonly rateLimit: SenderRateLimit,
  ) {}

  @Put(SEND_PATHS)
  @HttpCode(200)
  @UseGuards(AuthGuard, RateLimitGuard)
  async send(
    @Req() req: AuthenticatedRequest,
    @Param(MatrixValidationPipe) params: SendParams,
  ): Promise<{ event_id: string }> {
    const { content, heldBytes } = await this.whileReading(req, () => this.readContent(req));
    const { sender, originServerTs } = req.auth;
    return this.sends.send(
      sender,
      params,
      content,
      originServerTs ?? Date.now(),
      typeof req.id === 'string' ? req.id : randomUUID(),
      heldBytes,
    );
  }

  /**
   * Runs `read` with the body's size counted against MAX_IN_FLIGHT_BYTES from its first byte (503 + Retry-After
   * if it does not fit): its declared length, or MAX_BODY_BYTES for a chunked body, whose length is unknown.
   */
  private async whileReading<T>(req: AuthenticatedRequest, read: () => Promise<T>): Promise<T> {
    const declared = Number(req.headers['content-length'] ?? 0) || 0;
    const bytes = req.headers['transfer-encoding'] === undefined ? declared : this.config.MAX_BODY_BYTES;
    const release = this.sends.holdWhileReading(Math.min(bytes, this.config.MAX_BODY_BYTES));
    try {
      return await read();
    } finally {
      release();
    }
  }

  /**
   * The body parsed; the raw bytes are garbage once this returns (nothing keeps them while the request waits), but
   * are counted in `heldBytes`, for the serialized command the producer holds until it is sent.
   */
  private async readContent(req: AuthenticatedRequest): Promise<{ content: JsonObject; heldBytes: number }> {
    const body = await readBody(req, this.config.MAX_BODY_BYTES);
    const { content, heapBytes } = parseEventContentMeasured(body);
    return { content, heldBytes: heapBytes + body.length };
  }

  /**
   * A known path with another method than PUT: 405. A request with valid credentials and a body that is not an
   * event's content gets 400 instead, the first thing wrong with it (Complement's TestJson POSTs such bodies and
   * expects 400); without valid credentials the body is not read, and with them it is read only within the same
   * rate limit and in-flight bounds as a PUT's.
   */
  @All(SEND_PATHS)
  async wrongMethod(@Req() req: AuthenticatedRequest): Promise<never> {
    const auth = hasBody(req) ? await this.authenticated(req) : undefined;
    if (auth) {
      this.rateLimit.take(auth);
      await this.whileReading(req, async () => {
        const body = await readBody(req, this.config.MAX_BODY_BYTES);
        if (body.length > 0) parseEventContent(body);
      });
    }
    throw unrecognized(405);
  }

  private authenticated(req: AuthenticatedRequest): Promise<Authenticated | undefined> {
    return this.auth.authenticate(req).then(
      (auth) => auth,
      () => undefined,
    );
  }
}
