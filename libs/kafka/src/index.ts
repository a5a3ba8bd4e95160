// First: they must patch kafkajs before any other module loads kafkajs.
export * from './read-committed-fix';
export * from './produce-retry-fix';
export * from './batching-producer';
export * from './kafka-client';
export * from './reply-channel';
export * from './topics';
export * from './changelog-restore';
export * from './transactional-processor';
export * from './retry';
export * from './record-bytes';
