export * from './room-event';
export * from './send-command';
export * from './send-reply';
export * from './txn-record';
export * from './annotation-records';
export * from './topics';
