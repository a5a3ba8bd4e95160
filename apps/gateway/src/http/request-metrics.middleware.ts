import type { NextFunction, Request, Response } from 'express';
import { gatewayMetrics } from '@app/observability';

/** A bounded route label: never a room ID or txnId from the path. */
function routeOf(path: string): string {
  if (/^\/_matrix\/client\/(v3|r0)\/rooms\/[^/]+\/send\/[^/]+\/[^/]+$/.test(path)) return 'send';
  if (path.startsWith('/health/')) return 'health';
  return 'other';
}

/** Counts every answer by route, status and errcode, and times sends end to end. */
export function countRequests(req: Request, res: Response, next: NextFunction): void {
  const started = process.hrtime.bigint();
  res.once('finish', () => {
    const route = routeOf(req.path);
    const status = String(res.statusCode);
    gatewayMetrics.requests.inc({ route, status, errcode: (res.locals.errcode as string | undefined) ?? '' });
    if (route === 'send')
      gatewayMetrics.sendLatency.observe({ status }, Number(process.hrtime.bigint() - started) / 1e9);
  });
  next();
}
