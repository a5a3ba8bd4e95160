export * from './logging';
export * from './metrics';
export * from './metrics.controller';
export * from './boot';
