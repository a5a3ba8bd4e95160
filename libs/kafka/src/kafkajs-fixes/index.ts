/**
 * Fixes of kafkajs 2.2.4 defects that the project's tests and benchmark found (see each file). They replace
 * kafkajs modules in Node's module cache, so they must load before anything loads kafkajs: `@app/kafka` imports
 * this first.
 */
import './request-queue-timer';
import './read-committed';
import './produce-retry';
import './transactions';
import './group-fencing';
