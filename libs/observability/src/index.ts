export * from './logging';
export * from './metrics';
export * from './metrics-listener';
export * from './health.controller';
export * from './boot';
export * from './http-server';
export * from './tracing';
