import { BeforeApplicationShutdown, Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { commandKey, SEND_COMMAND_VERSION, SendCommand } from '@app/contracts';
import {
  canonicalJsonByteLength,
  checkLocalEvent,
  JsonObject,
  MatrixError,
  MatrixErrorBody,
  Sender,
  tooLarge,
  unavailable,
} from '@app/matrix';
import { ReplyTimeout } from '@app/kafka';
import { gatewayMetrics, reportReadiness } from '@app/observability';
import { BacklogMonitor } from './backlog-monitor';
import { RequestReplyClient } from './request-reply-client';
import { SendParams } from './send-params.dto';
import { ScopeHasher } from './scope-hasher';

/** The spec's limit on a whole event, as canonical JSON (the PDU size limit). */
export const MAX_EVENT_BYTES = 65536;
/** Stands in for fields the consumer adds, so the size check counts them. */
const EVENT_ID_PLACEHOLDER = `$${'x'.repeat(43)}`;

/** Turns a validated request into a send command, publishes it, and waits for the consumer's outcome. */
/** How long a stopping gateway must see no new send before it closes its server. */
const DRAIN_QUIET_MS = 300;

@Injectable()
export class SendService implements BeforeApplicationShutdown {
  private inFlight = 0;
  /** Estimated heap held by the requests in flight (see ParsedContent.heapBytes), bounded by MAX_IN_FLIGHT_BYTES. */
  private inFlightBytes = 0;
  private received = 0;
  private draining = false;

  constructor(
    private readonly config: AppConfig,
    private readonly kafka: RequestReplyClient,
    private readonly scopes: ScopeHasher,
    private readonly backlog: BacklogMonitor,
  ) {
    reportReadiness('gateway', () => this.isReady);
  }

  /**
   * Connected to Kafka with its reply topic in place, and not stopping: once stopping, load balancers stop sending
   * while the gateway answers what still comes.
   */
  get isReady(): boolean {
    return this.kafka.isReady && !this.draining;
  }

  /**
   * On SIGTERM, before the HTTP server closes: answer every send in flight, and the ones still arriving (requests
   * already on accepted connections, a load balancer that has not yet seen readiness turn false), until sends have
   * stopped for a moment. Closing at once reset connections whose request was sent but not yet read.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.draining = true;
    const deadline = performance.now() + this.config.SEND_TIMEOUT_MS + 2000;
    let seen = this.received;
    let quietSince = performance.now();
    while (performance.now() < deadline) {
      if (this.inFlight > 0 || this.received !== seen) {
        seen = this.received;
        quietSince = performance.now();
      } else if (performance.now() - quietSince >= DRAIN_QUIET_MS) {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /**
   * Refuses (503 + Retry-After) a request that would take the gateway past MAX_IN_FLIGHT requests or
   * MAX_IN_FLIGHT_BYTES: called with the declared body size before the body is read, and by `send` with the estimate.
   */
  refuseIfFull(bytes: number): void {
    if (this.inFlight >= this.config.MAX_IN_FLIGHT) throw unavailable('Too many requests in flight; retry shortly', 1);
    if (this.inFlightBytes + bytes > this.config.MAX_IN_FLIGHT_BYTES) {
      throw unavailable('Too much content in flight; retry shortly', 1);
    }
  }

  /**
   * Counts a body being received (`bytes`: its declared length) against MAX_IN_FLIGHT_BYTES, after `refuseIfFull`
   * with the same size; the returned function releases it, once, whatever way the reading ended.
   */
  holdWhileReading(bytes: number): () => void {
    this.refuseIfFull(bytes);
    this.inFlightBytes += bytes;
    gatewayMetrics.inFlightBytes.set(this.inFlightBytes);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.inFlightBytes -= bytes;
      gatewayMetrics.inFlightBytes.set(this.inFlightBytes);
    };
  }

  /**
   * `correlationId` is the request's id in the logs; the command carries it to the consumer and back. `heldBytes`
   * is the request's estimated heap (parsed content and raw size), counted against MAX_IN_FLIGHT_BYTES until it is
   * answered.
   */
  async send(
    sender: Sender,
    params: SendParams,
    content: JsonObject,
    originServerTs: number,
    correlationId: string,
    heldBytes: number,
  ): Promise<{ event_id: string }> {
    this.received++;
    checkLocalEvent({ roomId: params.roomId, type: params.eventType, content }, this.config.MATRIX_SERVER_NAME);
    const eventSize = canonicalJsonByteLength({
      event_id: EVENT_ID_PLACEHOLDER,
      room_id: params.roomId,
      sender: sender.userId,
      type: params.eventType,
      content,
      origin_server_ts: originServerTs,
    });
    if (eventSize > MAX_EVENT_BYTES)
      throw tooLarge(`Event is ${eventSize} bytes as canonical JSON; the limit is ${MAX_EVENT_BYTES}`);
    if (!this.kafka.isReady) throw unavailable('The server is not ready to accept events yet', 2);
    this.refuseIfFull(heldBytes);

    const hash = this.scopes.hash(sender);
    const key = commandKey(hash, params.txnId);
    const late = this.kafka.lateOutcome(key, { room_id: params.roomId, type: params.eventType });
    if (late) {
      gatewayMetrics.lateRepliesAnswered.inc();
      return late;
    }
    this.backlog.admit();
    const command: SendCommand = {
      v: SEND_COMMAND_VERSION,
      room_id: params.roomId,
      type: params.eventType,
      txn_id: params.txnId,
      scope_hash: hash,
      sender: sender.userId,
      device_id: sender.deviceId ?? null,
      content,
      origin_server_ts: originServerTs,
      correlation_id: correlationId,
      reply_to: this.kafka.replyTopic,
    };
    this.inFlight++;
    this.inFlightBytes += heldBytes;
    gatewayMetrics.inFlight.inc();
    gatewayMetrics.inFlightBytes.set(this.inFlightBytes);
    try {
      const reply = await this.kafka.request(key, command, this.config.SEND_TIMEOUT_MS);
      if (reply.status === 200) return reply.body as { event_id: string };
      const body = reply.body as MatrixErrorBody;
      // The consumer's own retryable refusal (its state budget is spent): the client gets Retry-After too.
      if (reply.status === 503) throw unavailable(body.error, 2);
      const { errcode, error, ...extra } = body;
      throw new MatrixError(reply.status, errcode, error, extra);
    } catch (error) {
      if (error instanceof MatrixError) throw error;
      if (error instanceof ReplyTimeout) {
        gatewayMetrics.replyTimeouts.inc();
        throw unavailable('Timed out waiting for the event to be stored; retry with the same transaction ID', 1);
      }
      throw unavailable('The event store is unavailable; retry with the same transaction ID', 2);
    } finally {
      this.inFlight--;
      this.inFlightBytes -= heldBytes;
      gatewayMetrics.inFlight.dec();
      gatewayMetrics.inFlightBytes.set(this.inFlightBytes);
    }
  }
}
