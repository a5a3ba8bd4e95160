import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { FakeHomeserver } from './support/fake-homeserver';
import { scrapeMetrics } from './support/metrics';
import { AppProcess, isolatedEnv, Pipeline, startPipeline, TEST_USERS } from './support/pipeline';
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

describe('other methods than PUT from a token holder', () => {
  let gateway: AppProcess;
  const BURST = 5;
  before(async () => {
    gateway = await AppProcess.start(
      'gateway',
      isolatedEnv({ RATE_LIMIT_PER_SECOND: '0.1', RATE_LIMIT_BURST: String(BURST) }),
    );
  });
  after(async () => {
    await gateway?.stop();
  });

  it('reads a POST body only within the sender’s rate limit: past it, 429 before a byte is parsed', async () => {
    const answers: string[] = [];
    for (let i = 0; i < BURST + 5; i++) {
      const res = await fetch(`${gateway.url}${sendPath()}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${alice.token}` },
        body: '{',
      });
      answers.push(`${res.status} ${((await res.json()) as { errcode: string }).errcode}`);
    }
    assert.deepEqual(answers.slice(0, BURST), Array(BURST).fill('400 M_NOT_JSON'), 'within the limit, judged');
    assert.deepEqual(answers.slice(BURST), Array(5).fill('429 M_LIMIT_EXCEEDED'), 'past it, refused unread');
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
  const arraysBody = `{"msgtype":"m.text","body":"arrays","a":[${Array(20_000).fill('[]').join(',')}]}`;
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
    const metrics = await (await fetch(gateway.metricsUrl)).text();
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

  it('counts bodies still being received against MAX_IN_FLIGHT_BYTES, and frees them when their clients leave', async () => {
    const size = 131_072;
    const connections: RawConnection[] = [];
    try {
      for (let i = 0; i < 32; i++) {
        const connection = await RawConnection.open(gateway.url);
        connections.push(connection);
        connection.write(
          requestHead('PUT', sendPath(), { authorization: `Bearer ${alice.token}`, 'content-length': size }),
        );
        connection.write(' '.repeat(size - 1)); // the last byte held back
      }
      const deadline = performance.now() + 5000;
      while ((await heldBytes()) < 32 * size && performance.now() < deadline) await sleep(50);
      assert.equal(await heldBytes(), 32 * size, 'the premise: 32 bodies of 128 KB being received are counted');
      const refused = await send('{"msgtype":"m.text","body":"small"}');
      assert.equal(refused.status, 503);
      assert.match(refused.body.error, /in flight/);
      assert.ok(Number(refused.retryAfter) >= 1, 'with Retry-After');
    } finally {
      for (const connection of connections) connection.destroy();
    }
    const deadline = performance.now() + 3000;
    while ((await heldBytes()) > 0 && performance.now() < deadline) await sleep(50);
    assert.equal(await heldBytes(), 0, 'nothing held once the clients left');
  });
});

describe('homeserver token checks under a flood of unknown tokens', () => {
  let pipeline: Pipeline;
  let homeserver: FakeHomeserver;
  const PER_CLIENT = 2;
  before(async () => {
    // Unknown tokens take 2.5 s to be refused: a flood keeps its look-ups in flight.
    homeserver = new FakeHomeserver(
      { 'hs-carol': { status: 200, body: { user_id: '@carol:test.local', device_id: 'CAROLDEV' } } },
      2500,
    );
    pipeline = await startPipeline({
      MATRIX_HOMESERVER_URL: await homeserver.start(),
      WHOAMI_TIMEOUT_MS: '5000',
      WHOAMI_MAX_CONCURRENT: '4',
      WHOAMI_MAX_CONCURRENT_PER_CLIENT: String(PER_CLIENT),
      TRUSTED_PROXIES: 'loopback',
    });
  });
  after(async () => {
    await pipeline?.stop();
    await homeserver?.stop();
  });

  const send = (url: string, token: string, forwardedFor: string) =>
    fetch(`${url}${sendPath()}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': forwardedFor },
      body: '{"msgtype":"m.text","body":"hello"}',
    }).then(async (res) => ({ status: res.status, body: (await res.json()) as { errcode?: string } }));

  it("lets a known user's first send through while one client address floods unknown tokens", async () => {
    const callsBefore = homeserver.whoamiCalls;
    const flood = Array.from({ length: 12 }, () => send(pipeline.gateway.url, `random-${randomUUID()}`, '203.0.113.9'));
    await sleep(500); // the flood's look-ups are in flight
    const carol = await send(pipeline.gateway.url, 'hs-carol', '198.51.100.7');
    assert.equal(carol.status, 200, JSON.stringify(carol.body));
    const answers = await Promise.all(flood);
    assert.equal(
      answers.filter((res) => res.status === 503).length,
      12 - PER_CLIENT,
      'the flood is refused past its share',
    );
    assert.equal(answers.filter((res) => res.body.errcode === 'M_UNKNOWN_TOKEN').length, PER_CLIENT);
    assert.equal(homeserver.whoamiCalls - callsBefore, PER_CLIENT + 1, 'the homeserver saw the flood’s share only');
  });

  it('ignores X-Forwarded-For unless TRUSTED_PROXIES names the proxy: forged addresses share one client’s share', async () => {
    const direct = await AppProcess.start('gateway', { ...pipeline.env, TRUSTED_PROXIES: '' });
    try {
      const callsBefore = homeserver.whoamiCalls;
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, i) => send(direct.url, `random-${randomUUID()}`, `203.0.113.${i + 1}`)),
      );
      assert.equal(answers.filter((res) => res.status === 503).length, 8 - PER_CLIENT);
      assert.equal(homeserver.whoamiCalls - callsBefore, PER_CLIENT, 'one share for the connection’s address');
    } finally {
      await direct.stop();
    }
  });
});

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

describe('slow clients and connection limits', () => {
  let gateway: AppProcess;
  const HEADERS_TIMEOUT_MS = 1000;
  const REQUEST_TIMEOUT_MS = 2000;
  /** Node checks deadlines once a second (DEADLINE_CHECK_MS); the rest is margin for a loaded machine. */
  const slack = 1000 + 2000;
  before(async () => {
    gateway = await AppProcess.start(
      'gateway',
      isolatedEnv({
        HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
        HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      }),
    );
  });
  after(async () => {
    await gateway?.stop();
  });

  it('answers 408 and closes a connection whose headers trickle in past HTTP_HEADERS_TIMEOUT_MS', async () => {
    const connection = await RawConnection.open(gateway.url);
    const started = performance.now();
    connection.write(`PUT ${sendPath()} HTTP/1.1\r\nhost: gateway\r\n`);
    const trickle = setInterval(() => connection.write(`x-slow-${Math.random()}: 1\r\n`), 200);
    try {
      const res = await connection.response(HEADERS_TIMEOUT_MS + slack);
      assert.equal(res?.status, 408);
      assert.equal((JSON.parse(res.body) as { errcode: string }).errcode, 'M_UNKNOWN');
      assert.ok(await connection.closesWithin(1000), 'and closes the connection');
      assert.ok(performance.now() - started < HEADERS_TIMEOUT_MS + slack);
    } finally {
      clearInterval(trickle);
      connection.destroy();
    }
  });

  it('stops waiting for a body that trickles in past HTTP_REQUEST_TIMEOUT_MS', async () => {
    const connection = await RawConnection.open(gateway.url);
    const started = performance.now();
    connection.write(
      requestHead('PUT', sendPath(), { authorization: `Bearer ${alice.token}`, 'content-length': 1000 }),
    );
    connection.write('{"body":"');
    const trickle = setInterval(() => connection.write('x'), 200); // the body would take 200 s
    try {
      assert.ok(await connection.closesWithin(REQUEST_TIMEOUT_MS + slack), 'the connection is closed');
      assert.ok(performance.now() - started >= REQUEST_TIMEOUT_MS - 100, 'not before the deadline');
    } finally {
      clearInterval(trickle);
      connection.destroy();
    }
  });

  it('takes a client that drops mid-body, or misses the body deadline, as its own doing: no error log, no 500', async () => {
    const outputBefore = gateway.output.length;
    const head = requestHead('PUT', sendPath(), { authorization: `Bearer ${alice.token}`, 'content-length': 1000 });
    const dropping = await RawConnection.open(gateway.url);
    dropping.write(head);
    dropping.write('{"body":"');
    await new Promise((resolve) => setTimeout(resolve, 300)); // the gateway is reading the body
    dropping.destroy();
    const late = await RawConnection.open(gateway.url);
    late.write(head);
    late.write('{"body":"');
    try {
      assert.ok(await late.closesWithin(REQUEST_TIMEOUT_MS + slack), 'the late body is cut off (the premise)');
    } finally {
      late.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    const logs = gateway.output.slice(outputBefore).join('');
    assert.doesNotMatch(logs, /unhandled error|answered 500|Error: aborted/);
    const series = [...(await scrapeMetrics(gateway.metricsUrl)).keys()];
    assert.ok(
      series.some((name) => name.startsWith('matrix_gateway_')),
      'the metrics are read (the premise)',
    );
    assert.deepEqual(
      series.filter((name) => name.includes('status="500"')),
      [],
    );
  });

  it('counts only receiving the request against HTTP_REQUEST_TIMEOUT_MS, not waiting for the outcome', async () => {
    // No consumer: the send waits SEND_TIMEOUT_MS (5 s), longer than the request deadline, and gets its 503.
    const res = await fetch(`${gateway.url}${sendPath()}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${alice.token}` },
      body: '{"msgtype":"m.text","body":"waits"}',
    });
    assert.equal(res.status, 503);
    assert.match(((await res.json()) as { error: string }).error, /Timed out/);
  });

  it('keeps an idle connection open past a load balancer’s 60 s (HTTP_KEEP_ALIVE_TIMEOUT_MS, 75 s by default)', async () => {
    const connection = await RawConnection.open(gateway.url);
    try {
      connection.write(requestHead('GET', '/health/live'));
      const res = await connection.response(5000);
      assert.equal(res?.status, 200);
      assert.equal(
        res.headers['keep-alive'],
        'timeout=75',
        'the server tells clients how long it keeps the connection',
      );
      // Node's default closed an idle connection after 5 s.
      assert.equal(await connection.closesWithin(6000), false, 'still open after 6 s idle');
      connection.write(requestHead('GET', '/health/live'));
      assert.equal((await connection.response(5000))?.status, 200, 'and serves the next request');
    } finally {
      connection.destroy();
    }
  });

  it('accepts at most HTTP_MAX_CONNECTIONS connections at once, and more once some close', async () => {
    const cap = 4;
    const capped = await AppProcess.start('gateway', isolatedEnv({ HTTP_MAX_CONNECTIONS: String(cap) }));
    const connections: RawConnection[] = [];
    try {
      const answered: boolean[] = [];
      for (let i = 0; i < cap + 2; i++) {
        const connection = await RawConnection.open(capped.url);
        connections.push(connection);
        connection.write(requestHead('GET', '/health/live'));
        answered.push((await connection.response(3000))?.status === 200);
      }
      // The readiness probe's fetch may still hold a pooled connection (undici keeps it as long as the server's
      // keep-alive), which counts too: one slot fewer for the raw connections.
      const accepted = answered.indexOf(false);
      assert.ok(accepted === cap || accepted === cap - 1, `${accepted} connections answered with a cap of ${cap}`);
      assert.ok(
        answered.slice(accepted).every((ok) => !ok),
        `the connections past the cap are dropped: ${answered.join(', ')}`,
      );
      assert.ok(
        connections.slice(accepted).every((connection) => connection.closed),
        'closed by the server',
      );
      connections.shift()!.destroy();
      await sleep(200);
      const next = await RawConnection.open(capped.url);
      connections.push(next);
      next.write(requestHead('GET', '/health/live'));
      assert.equal((await next.response(3000))?.status, 200, 'a connection closed makes room for a new one');
    } finally {
      connections.forEach((connection) => connection.destroy());
      await capped.stop();
    }
  });
});
