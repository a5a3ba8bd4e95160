/**
 * Fixes of defects in kafkajs 2.2.4 that the project's tests found (see each file). They replace kafkajs modules
 * in Node's module cache, so they must load before anything loads kafkajs: `@app/kafka` imports this first.
 */
import './read-committed';
import './produce-retry';
