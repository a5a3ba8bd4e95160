/** A minimal client for the send endpoint, as the tests need it (the SDK tests use real SDKs). */
export interface SendResult {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

export async function sendEvent(
  baseUrl: string,
  token: string | undefined,
  roomId: string,
  eventType: string,
  txnId: string,
  content: unknown,
  prefix = '/_matrix/client/v3',
  signal?: AbortSignal,
): Promise<SendResult> {
  const path = `${prefix}/rooms/${encodeURIComponent(roomId)}/send/${encodeURIComponent(eventType)}/${encodeURIComponent(txnId)}`;
  const res = await fetch(`${baseUrl}${path}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof content === 'string' ? content : JSON.stringify(content),
    signal,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}
