import { Logger } from '@nestjs/common';
import { errorChain } from './kafkajs-fixes/error-chain';

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
          logger.error(
            `${what}: Kafka refused the credentials (${String(error)}); check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and the password; retrying`,
          );
        } else logger.warn(`${what}: Kafka not reachable yet (${String(error)}); retrying`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * tries)));
    }
  }
}

/**
 * kafkajs errors that mean Kafka, or the coordinator of a group, is out of reach for now. kafkajs counts some of
 * them as final (a missing group coordinator, which a broker restart causes) and leaves its consumer stopped.
 */
const UNREACHABLE = new Set([
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNumberOfRetriesExceeded',
]);

export { errorChain };

export function isKafkaUnreachable(error: unknown): boolean {
  return errorChain(error).some(({ name }) => name !== undefined && UNREACHABLE.has(name));
}

/**
 * What a reader does when its kafkajs consumer stopped and kafkajs will not start it again: if Kafka only looks out
 * of reach, start it again later, with back-off, for as long as it takes (the process stays live and not ready,
 * which is what losing Kafka should look like); after anything else, give up (the owner exits, and its supervisor
 * starts a fresh process).
 */
export class ConsumerRevival {
  private attempts = 0;
  private timer?: NodeJS.Timeout;
  private cancelled = false;

  constructor(
    private readonly logger: Logger,
    /** Connects, subscribes and runs the consumer again. */
    private readonly run: () => Promise<void>,
    private readonly giveUp: (error: Error) => void,
  ) {}

  /** The consumer stopped for good, as far as kafkajs is concerned. */
  stopped(error: Error): void {
    if (this.cancelled) return;
    if (!isKafkaUnreachable(error)) {
      this.giveUp(error);
      return;
    }
    const delay = Math.min(10_000, 500 * 2 ** this.attempts++);
    this.logger.warn(`consumer stopped (${error.message}): Kafka looks out of reach, starting it again in ${delay} ms`);
    this.timer = setTimeout(() => {
      if (!this.cancelled) this.run().catch((again: Error) => this.stopped(again));
    }, delay);
  }

  /** In the group again: the next stop starts with a short delay. */
  joined(): void {
    this.attempts = 0;
  }

  cancel(): void {
    this.cancelled = true;
    clearTimeout(this.timer);
  }
}
