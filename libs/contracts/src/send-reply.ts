import { MatrixErrorBody } from '@app/matrix';

/** The consumer's answer to one command, routed to the gateway instance that waits for it. */
export type SendReply =
  | { correlation_id: string; status: 200; body: { event_id: string } }
  | { correlation_id: string; status: number; body: MatrixErrorBody };

export function decodeSendReply(value: Buffer | null): SendReply | null {
  try {
    const parsed = JSON.parse(value?.toString('utf8') ?? 'null') as Partial<SendReply> | null;
    if (parsed && typeof parsed.correlation_id === 'string' && typeof parsed.status === 'number' && parsed.body) {
      return parsed as SendReply;
    }
  } catch {
    // a reply we cannot read is as good as a lost one: the request times out and the client retries
  }
  return null;
}
