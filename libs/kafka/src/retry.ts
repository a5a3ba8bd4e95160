import { Logger } from '@nestjs/common';

/**
 * Runs `attempt` until it succeeds, backing off up to 5 s, so a process can start (live, not ready) before Kafka
 * is reachable and become ready when it is. `isFatal` errors (a wrong topic layout) are not retried.
 */
export async function untilConnected(
  logger: Logger,
  what: string,
  attempt: () => Promise<void>,
  isFatal: (error: unknown) => boolean,
  stopped: () => boolean,
): Promise<void> {
  for (let tries = 1; !stopped(); tries++) {
    try {
      await attempt();
      if (tries > 1) logger.log(`${what}: connected after ${tries} attempts`);
      return;
    } catch (error) {
      if (isFatal(error)) throw error;
      if (tries === 1 || tries % 10 === 0) {
        // Not fatal: a rotated secret or a user created late can heal, and a restart loop would not help.
        if ((error as Error).name === 'KafkaJSSASLAuthenticationError') {
          logger.error(`${what}: Kafka refused the credentials (${String(error)}); check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and the password; retrying`);
        } else logger.warn(`${what}: Kafka not reachable yet (${String(error)}); retrying`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * tries)));
    }
  }
}
