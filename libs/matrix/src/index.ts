export * from './canonical-json';
export * from './errors';
export * from './event-content';
export * from './event-id';
export * from './grammar';
export * from './hash';
export * from './transaction';
export * from './relations';
