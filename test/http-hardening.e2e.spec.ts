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
