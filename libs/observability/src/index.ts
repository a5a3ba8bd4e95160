export * from './logging';
export * from './metrics';
export * from './metrics.controller';
export * from './health.controller';
export * from './boot';
export * from './tracing';
