import { sendEvent } from './matrix-client';

export interface Transaction {
  token: string;
  roomId: string;
  txnId: string;
  /** How many times the client sends it on purpose (a retry of a transaction that already succeeded). */
  sends: number;
  /** The event content; a small text message naming the attempt when not given. */
  content?: Record<string, unknown>;
}

export interface TransactionOutcome {
  transaction: Transaction;
  /** The event_id of every 200 answer. */
  eventIds: string[];
  /** Statuses of answers that were not 200 (the client retried those). */
  retryable: number[];
  /** Anything else: a status a client must not retry, or no 200 in the end. */
  failures: string[];
  longestWaitMs: number;
}

/**
 * Sends transactions with bounded concurrency, as a well-behaved client does: a retryable answer (503, 429, a
 * connection error) is retried with the same txnId after a pause, up to `maxAttempts`. `onProgress` lets a test
 * act while the load runs.
 */
export async function runLoad(
  baseUrl: () => string,
  transactions: Transaction[],
  options: {
    concurrency: number;
    maxAttempts?: number;
    retryPauseMs?: number;
    /** A client gives up on a request after this long (then retries, as for a lost connection). */
    requestTimeoutMs?: number;
    /** Checked before each new transaction: once true, no new one starts (those under way finish). */
    shouldStop?: () => boolean;
    /**
     * Epoch ms past which nothing is retried and no transaction starts: a pipeline that never recovers fails the
     * test with what it answered, instead of running into the test's timeout (and on after it).
     */
    deadline?: number;
    /** Told the time each transaction ended, for throughput over time. */
    onDone?: (outcome: TransactionOutcome, at: number) => void;
    onProgress?: (done: number) => void;
  },
): Promise<TransactionOutcome[]> {
  const outcomes: TransactionOutcome[] = [];
  const maxAttempts = options.maxAttempts ?? 120;
  let next = 0;
  let done = 0;
  async function worker(): Promise<void> {
    const pastDeadline = (): boolean => options.deadline !== undefined && Date.now() > options.deadline;
    while (next < transactions.length && !options.shouldStop?.() && !pastDeadline()) {
      const transaction = transactions[next++];
      const outcome: TransactionOutcome = { transaction, eventIds: [], retryable: [], failures: [], longestWaitMs: 0 };
      for (let send = 0; send < transaction.sends; send++) {
        for (let attempt = 1; ; attempt++) {
          const started = Date.now();
          const content = transaction.content ?? {
            msgtype: 'm.text',
            body: `${transaction.txnId} send ${send} attempt ${attempt}`,
          };
          const signal = options.requestTimeoutMs ? AbortSignal.timeout(options.requestTimeoutMs) : undefined;
          const res: { status: number; body: Record<string, unknown> } = await sendEvent(
            baseUrl(),
            transaction.token,
            transaction.roomId,
            'm.room.message',
            transaction.txnId,
            content,
            undefined,
            signal,
          ).catch((error: unknown) => ({ status: 0, body: { error: String(error) } }));
          outcome.longestWaitMs = Math.max(outcome.longestWaitMs, Date.now() - started);
          if (res.status === 200) {
            outcome.eventIds.push(String(res.body.event_id));
            break;
          }
          if (
            (res.status === 503 || res.status === 429 || res.status === 0) &&
            attempt < maxAttempts &&
            !pastDeadline()
          ) {
            outcome.retryable.push(res.status);
            await new Promise((resolve) => setTimeout(resolve, options.retryPauseMs ?? 250));
            continue;
          }
          outcome.failures.push(
            `${res.status} ${JSON.stringify(res.body)}${pastDeadline() ? ' (the deadline passed)' : ''}`,
          );
          break;
        }
      }
      outcomes.push(outcome);
      options.onDone?.(outcome, Date.now());
      options.onProgress?.(++done);
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, () => worker()));
  return outcomes;
}
