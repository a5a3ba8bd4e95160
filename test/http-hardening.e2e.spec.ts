import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AppProcess, isolatedEnv, TEST_USERS } from './support/pipeline';
import { RawConnection, requestHead } from './support/raw-http';

const { alice } = TEST_USERS;
const sendPath = (txn: string = randomUUID()) =>
  `/_matrix/client/v3/rooms/${encodeURIComponent('!hardening:test.local')}/send/m.room.message/${txn}`;

/** `{"a":[0,0,0,…]}` of about `bytes`: cheap to send, costly to parse and scan number by number. */
const numbersBody = (bytes: number): string =>
  `{"a":[${Array(Math.floor(bytes / 2) - 4)
    .fill('0')
    .join(',')}]}`;

describe('work done before anyone is known', () => {
  let gateway: AppProcess;
  before(async () => {
    gateway = await AppProcess.start('gateway', isolatedEnv({ MAX_BODY_BYTES: '131072', SEND_TIMEOUT_MS: '500' }));
  });
  after(async () => {
    await gateway?.stop();
  });

  for (const { name, method, token, status, errcode } of [
    { name: 'a PUT without a token', method: 'PUT', token: undefined, status: 401, errcode: 'M_MISSING_TOKEN' },
    { name: 'a PUT with an unknown token', method: 'PUT', token: 'nobody', status: 401, errcode: 'M_UNKNOWN_TOKEN' },
    { name: 'a POST without a token', method: 'POST', token: undefined, status: 405, errcode: 'M_UNRECOGNIZED' },
    { name: 'a POST with an unknown token', method: 'POST', token: 'nobody', status: 405, errcode: 'M_UNRECOGNIZED' },
  ]) {
    it(`answers ${name} with ${status} on its headers alone, before a byte of its body is sent`, async () => {
      const connection = await RawConnection.open(gateway.url);
      try {
        connection.write(
          requestHead(method, sendPath(), {
            'content-length': 100_000,
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          }),
        );
        const res = await connection.response(5000);
        assert.ok(res, 'an answer while the body is still held back');
        assert.equal(res.status, status);
        assert.equal((JSON.parse(res.body) as { errcode: string }).errcode, errcode);
      } finally {
        connection.destroy();
      }
    });
  }

  it('reads the body of a PUT with valid credentials (the premise of the test above)', async () => {
    const connection = await RawConnection.open(gateway.url);
    try {
      connection.write(
        requestHead('PUT', sendPath(), { 'content-length': 100_000, authorization: `Bearer ${alice.token}` }),
      );
      assert.equal(await connection.response(1500), null, 'the gateway waits for the body');
      connection.write(numbersBody(100_000).padEnd(100_000, ' ').slice(0, 100_000));
      const res = await connection.response(10_000);
      assert.ok(res, 'an answer once the body is in');
      assert.notEqual(res.status, 401);
    } finally {
      connection.destroy();
    }
  });

  it('never parses the body of a request without valid credentials: a POST of `{` is 405, not 400 M_NOT_JSON', async () => {
    for (const headers of [{}, { authorization: 'Bearer nobody' }]) {
      const res = await fetch(`${gateway.url}${sendPath()}`, { method: 'POST', headers, body: '{' });
      assert.equal(res.status, 405);
      assert.equal(((await res.json()) as { errcode: string }).errcode, 'M_UNRECOGNIZED');
    }
    const authenticated = await fetch(`${gateway.url}${sendPath()}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice.token}` },
      body: '{',
    });
    assert.equal(authenticated.status, 400, 'with valid credentials the body is still judged (Complement TestJson)');
    assert.equal(((await authenticated.json()) as { errcode: string }).errcode, 'M_NOT_JSON');
  });

  it('keeps the connection after refusing a body of a send’s size, and closes it after refusing a larger or chunked one', async () => {
    const small = await RawConnection.open(gateway.url);
    const body = numbersBody(60_000);
    small.write(requestHead('PUT', sendPath(), { 'content-length': Buffer.byteLength(body) }) + body);
    assert.equal((await small.response(5000))?.status, 401);
    small.write(requestHead('GET', '/health/live'));
    assert.equal((await small.response(5000))?.status, 200, 'the same connection serves the next request');
    small.destroy();

    for (const headers of [{ 'content-length': 10_000_000 }, { 'transfer-encoding': 'chunked' }] as Record<
      string,
      string | number
    >[]) {
      const large = await RawConnection.open(gateway.url);
      large.write(requestHead('POST', sendPath(), headers));
      const res = await large.response(5000);
      assert.equal(res?.status, 405);
      assert.equal(res?.headers.connection, 'close');
      assert.ok(await large.closesWithin(5000), 'the server closes rather than read the body');
      large.destroy();
    }
  });
});

describe('memory held by waiting requests', () => {
  let gateway: AppProcess;
  const SEND_TIMEOUT_MS = 4000;
  before(async () => {
    // No consumer: every accepted send waits SEND_TIMEOUT_MS, holding its content.
    gateway = await AppProcess.start(
      'gateway',
      isolatedEnv({
        MAX_BODY_BYTES: '131072',
        MAX_IN_FLIGHT_BYTES: String(32 * 131072),
        SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
      }),
    );
  });
  after(async () => {
    await gateway?.stop();
  });

  /** `{"a":[[],[],…]}` of about 60 KB: an event of legal size that is about 1.4 MB of heap once parsed. */
  const arraysBody = `{"a":[${Array(20_000).fill('[]').join(',')}]}`;
  const send = (body: string) =>
    fetch(`${gateway.url}${sendPath()}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${alice.token}` },
      body,
    }).then(async (res) => ({
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      body: (await res.json()) as { errcode: string; error: string },
    }));
  const heldBytes = async (): Promise<number> => {
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    return Number(/^matrix_gateway_in_flight_bytes_estimate (\S+)$/m.exec(metrics)?.[1]);
  };

  it('answers 503 + Retry-After at once past MAX_IN_FLIGHT_BYTES, counts parsed content, and frees it when answered', async () => {
    const waiting = [send(arraysBody), send(arraysBody)];
    const deadline = performance.now() + 3000;
    while ((await heldBytes()) < 2 * 1_000_000 && performance.now() < deadline) await sleep(50);
    const held = await heldBytes();
    assert.ok(held > 2 * 1_000_000, `the premise: two 60 KB sends wait holding over 1 MB each (${held})`);

    const started = performance.now();
    const refused = await send(arraysBody);
    assert.equal(refused.status, 503);
    assert.equal(refused.body.errcode, 'M_UNKNOWN');
    assert.match(refused.body.error, /in flight/);
    assert.ok(Number(refused.retryAfter) >= 1, 'with Retry-After');
    assert.ok(performance.now() - started < SEND_TIMEOUT_MS, 'refused at once, not after waiting');

    const small = await send('{"msgtype":"m.text","body":"small"}');
    assert.match(small.body.error, /Timed out/, 'a small send still fits beside them, and waits for the consumer');

    for (const res of await Promise.all(waiting)) assert.match(res.body.error, /Timed out/);
    assert.equal(await heldBytes(), 0, 'nothing held once they are answered');
    const again = await send(arraysBody);
    assert.match(again.body.error, /Timed out/, 'room again for a large send');
  });
});

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
