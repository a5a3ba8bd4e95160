import type { NextFunction, Request, Response } from 'express';

/** The CORS headers the spec asks of every Client-Server response, and the answer to a preflight. */
export function matrixCors(req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Allow-Methods', 'GET, POST, PUT, DELETE, OPTIONS');
  res.setHeader('Access-Control-Allow-Headers', 'X-Requested-With, Content-Type, Authorization');
  if (req.method === 'OPTIONS') {
    res.status(200).json({});
    return;
  }
  next();
}
