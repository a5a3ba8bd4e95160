import { ConsoleLogger, LogLevel } from '@nestjs/common';
import { AppConfig, ConfigError, loadConfig } from './app-config';

const LEVELS: Record<string, LogLevel[]> = {
  fatal: ['fatal'],
  error: ['fatal', 'error'],
  warn: ['fatal', 'error', 'warn'],
  info: ['fatal', 'error', 'warn', 'log'],
  debug: ['fatal', 'error', 'warn', 'log', 'debug'],
};

/**
 * Starts an app: validates the configuration first (a bad value exits 1 with one line naming the variable),
 * then runs `start`, which returns a line to log once the app is up. Any start failure exits 1 too.
 */
export function bootOrExit(name: string, start: (config: AppConfig, logger: ConsoleLogger) => Promise<string>): void {
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${name}: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const logger = new ConsoleLogger(name, { logLevels: LEVELS[config.LOG_LEVEL], json: process.env.NODE_ENV === 'production' });
  start(config, logger).then(
    (line) => logger.log(line),
    (error: unknown) => {
      logger.fatal(`failed to start: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    },
  );
}
