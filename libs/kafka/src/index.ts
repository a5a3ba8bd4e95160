// First: the kafkajs fixes must load before any other module loads kafkajs. Internal: nothing to export.
import './kafkajs-fixes';
export * from './batching-producer';
export * from './kafka-client';
export * from './reply-channel';
export * from './topics';
export * from './changelog-restore';
export * from './transactional-processor';
export * from './retry';
export * from './record-bytes';
export * from './orphan-reply-topics';
