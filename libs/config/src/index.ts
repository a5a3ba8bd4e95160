export * from './app-config';
export * from './config.module';
export * from './scope-hash-secret';
export * from './kafka-security';
export * from './topic-settings';
