import { Injectable, NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { AppConfig } from '@app/config';
import { tooLarge } from '@app/matrix';

export interface RequestWithBody extends Request {
  rawBody?: Buffer;
}

/**
 * Reads the body as bytes, whatever Content-Type says (clients do not always send one), up to a hard cap.
 * Parsing is the send handler's job, with Matrix' own JSON rules.
 */
@Injectable()
export class RawBodyMiddleware implements NestMiddleware {
  constructor(private readonly config: AppConfig) {}

  use(req: RequestWithBody, _res: Response, next: NextFunction): void {
    const limit = this.config.MAX_BODY_BYTES;
    const declared = Number(req.headers['content-length']);
    if (declared > limit) return next(tooLarge(`Request body over ${limit} bytes`));
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (error?: unknown): void => {
      if (done) return;
      done = true;
      req.removeListener('data', onData);
      if (error) return next(error);
      req.rawBody = Buffer.concat(chunks, size);
      next();
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish(tooLarge(`Request body over ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => finish());
    req.once('error', (error) => finish(error));
  }
}
