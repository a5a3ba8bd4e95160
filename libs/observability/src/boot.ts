import { INestApplication } from '@nestjs/common';
import { Logger as NestPinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AppConfig, ConfigError, describeKafkaSecurity, loadConfig, loadKafkaSecurity } from '@app/config';
import { createLogger } from './logging';
import { serveMetrics } from './metrics-listener';

/**
 * An app to start: its name, the port of its `/metrics`, and what it needs beyond the shared settings (a check that
 * throws a ConfigError).
 */
export interface BootedApp {
  name: string;
  metricsPort: (config: AppConfig) => number;
  requires?: (config: AppConfig) => unknown;
}

/**
 * Starts an app: validates the configuration first, with what the app `requires` (a bad value exits 1 with one
 * line naming the variable), then runs `start`, which creates the Nest app; its logs go through pino from then on.
 * Any start failure exits 1.
 */
export function bootOrExit(
  app: BootedApp,
  start: (config: AppConfig, logger: Logger) => Promise<{ ready: string }>,
): void {
  const { name, metricsPort, requires = () => undefined } = app;
  let config: AppConfig;
  try {
    config = loadConfig();
    loadKafkaSecurity(config); // the files it names must be readable now, not at the first connection
    requires(config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${name}: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger(name, config.LOG_LEVEL, config.LOG_FORMAT);
  logger.info(`Kafka at ${config.KAFKA_BROKERS}: ${describeKafkaSecurity(config)}`);
  start(config, logger)
    .then(async ({ ready }) => {
      await serveMetrics(config, metricsPort(config));
      logger.info(`metrics on http://${config.METRICS_HOST}:${metricsPort(config)}/metrics`);
      return ready;
    })
    .then(
      (ready) => logger.info(ready),
      (error: unknown) => {
        logger.fatal(`failed to start: ${error instanceof Error ? error.message : String(error)}`);
        process.exit(1);
      },
    );
}

/** Routes Nest's own logging (and the lines buffered during start-up) through pino. */
export function usePino(app: INestApplication): void {
  app.useLogger(app.get(NestPinoLogger));
}
