import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EVENT_HEADERS } from '@app/contracts';
import { EVENT_ID_PATTERN, MAX_JSON_DEPTH, scopeHash, sha256Base64Url, shortHash, transactionScope } from '@app/matrix';
import { readEventLog } from './support/event-log';
import { FakeHomeserver } from './support/fake-homeserver';
import { sendEvent } from './support/matrix-client';
import {
  AppProcess,
  isolatedEnv,
  Pipeline,
  startPipeline,
  TEST_SCOPE_HASH_SECRET,
  TEST_USERS,
} from './support/pipeline';

const { alice } = TEST_USERS;
const ROOM = '!conformance:test.local';
const AS_TOKEN = 'as-token-bridge-0001';
const AS_UNLIMITED_TOKEN = 'as-token-unlimited-0001';

function writeRegistrations(): string {
  const dir = tmpdir();
  const limited = join(dir, `bridge-${randomUUID()}.yaml`);
  const unlimited = join(dir, `unlimited-${randomUUID()}.yaml`);
  writeFileSync(
    limited,
    `id: bridge\nas_token: ${AS_TOKEN}\nhs_token: hs-secret\nurl: null\nsender_localpart: bridgebot\n` +
      `namespaces:\n  users:\n    - exclusive: true\n      regex: '@bridge_.*:test\\.local'\n  aliases: []\n  rooms: []\nrate_limited: true\n`,
  );
  writeFileSync(
    unlimited,
    `id: unlimited\nas_token: ${AS_UNLIMITED_TOKEN}\nhs_token: hs-secret-2\nsender_localpart: freebot\n` +
      `namespaces:\n  users:\n    - exclusive: true\n      regex: '@free_.*:test\\.local'\nrate_limited: false\n`,
  );
  return `${limited},${unlimited}`;
}

/** PUT with full control over path, query, headers and body. */
async function put(
  base: string,
  path: string,
  init: {
    token?: string;
    query?: string;
    body?: string | Buffer;
    headers?: Record<string, string>;
    method?: string;
  } = {},
) {
  const res = await fetch(`${base}${path}${init.query ? `?${init.query}` : ''}`, {
    method: init.method ?? 'PUT',
    headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...init.headers },
    body:
      init.body ??
      (init.method === 'OPTIONS' || init.method === 'GET' ? undefined : '{"msgtype":"m.text","body":"hi"}'),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: JSON.parse(text) as Record<string, unknown> };
}

const sendPath = (txn: string = randomUUID(), room = ROOM, type = 'm.room.message', prefix = '/_matrix/client/v3') =>
  `${prefix}/rooms/${encodeURIComponent(room)}/send/${encodeURIComponent(type)}/${encodeURIComponent(txn)}`;

describe('gateway conformance against a real broker', () => {
  let pipeline: Pipeline;
  let homeserver: FakeHomeserver;
  let homeserverUrl: string;
  let url: string;
  const eventsToCheck = new Map<
    string,
    (event: { sender: string; origin_server_ts: number }, headers: Record<string, string>) => void
  >();

  before(async () => {
    homeserver = new FakeHomeserver({
      'hs-carol': { status: 200, body: { user_id: '@carol:test.local', device_id: 'CAROLDEV' } },
      'hs-dave': { status: 200, body: { user_id: '@dave:test.local', device_id: 'DAVEDEV' } },
      'hs-erin-short': { status: 200, body: { user_id: '@erin:test.local' } },
      'hs-soft': { status: 401, body: { errcode: 'M_UNKNOWN_TOKEN', error: 'Token expired', soft_logout: true } },
      'hs-slow': { status: 200, body: { user_id: '@slow:test.local' }, delayMs: 5000 },
    });
    homeserverUrl = await homeserver.start();
    pipeline = await startPipeline({
      MATRIX_APPSERVICE_FILES: writeRegistrations(),
      MATRIX_HOMESERVER_URL: homeserverUrl,
      WHOAMI_TIMEOUT_MS: '500',
      MAX_BODY_BYTES: '100000',
      RATE_LIMIT_PER_SECOND: '0',
    });
    url = pipeline.gateway.url;
  });
  after(async () => {
    await pipeline?.stop();
    await homeserver?.stop();
  });

  describe('the error table', () => {
    const cases: { name: string; request: () => Parameters<typeof put>; status: number; errcode: string }[] = [
      { name: 'no token', request: () => [url, sendPath()], status: 401, errcode: 'M_MISSING_TOKEN' },
      {
        name: 'both an Authorization header and an access_token parameter (as Synapse)',
        request: () => [url, sendPath(), { token: alice.token, query: `access_token=${alice.token}` }],
        status: 401,
        errcode: 'M_MISSING_TOKEN',
      },
      {
        name: 'an unknown token',
        request: () => [url, sendPath(), { token: 'nobody-knows-me' }],
        status: 401,
        errcode: 'M_UNKNOWN_TOKEN',
      },
      {
        name: 'a body that is not JSON',
        request: () => [url, sendPath(), { token: alice.token, body: '{"msgtype":' }],
        status: 400,
        errcode: 'M_NOT_JSON',
      },
      {
        name: 'a body that is not UTF-8',
        request: () => [
          url,
          sendPath(),
          { token: alice.token, body: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]) },
        ],
        status: 400,
        errcode: 'M_NOT_JSON',
      },
      {
        name: 'Infinity',
        request: () => [url, sendPath(), { token: alice.token, body: '{"body": Infinity}' }],
        status: 400,
        errcode: 'M_NOT_JSON',
      },
      {
        name: 'a JSON array',
        request: () => [url, sendPath(), { token: alice.token, body: '[1]' }],
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'a float',
        request: () => [url, sendPath(), { token: alice.token, body: '{"body": 1.1}' }],
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'an integer over 2^53-1',
        request: () => [url, sendPath(), { token: alice.token, body: '{"body": 9007199254740992}' }],
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'an integer under -(2^53-1)',
        request: () => [url, sendPath(), { token: alice.token, body: '{"body": -9007199254740992}' }],
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'a bad room ID',
        request: () => [url, sendPath(undefined, 'not-a-room'), { token: alice.token }],
        status: 400,
        errcode: 'M_INVALID_PARAM',
      },
      {
        name: 'a path that is not valid percent-encoding',
        request: () => [url, '/_matrix/client/v3/rooms/%ZZ/send/m.room.message/t', { token: alice.token }],
        status: 400,
        errcode: 'M_INVALID_PARAM',
      },
      {
        name: 'a txnId over 255 bytes',
        request: () => [url, sendPath('t'.repeat(256)), { token: alice.token }],
        status: 400,
        errcode: 'M_INVALID_PARAM',
      },
      {
        name: 'an event type over 255 bytes',
        request: () => [url, sendPath(undefined, ROOM, 'x'.repeat(256)), { token: alice.token }],
        status: 413,
        errcode: 'M_TOO_LARGE',
      },
      {
        name: 'a room ID over 255 bytes',
        request: () => [url, sendPath(undefined, `!${'r'.repeat(250)}:test.local`), { token: alice.token }],
        status: 413,
        errcode: 'M_TOO_LARGE',
      },
      {
        name: 'an event over 65536 bytes (Complement TestEvent)',
        request: () => [
          url,
          sendPath(),
          {
            token: alice.token,
            body: JSON.stringify({ msgtype: 'm.text', body: 'and they dont stop coming '.repeat(2700) }),
          },
        ],
        status: 413,
        errcode: 'M_TOO_LARGE',
      },
      {
        name: 'a body over MAX_BODY_BYTES',
        request: () => [url, sendPath(), { token: alice.token, body: `{"a":"${'x'.repeat(200000)}"}` }],
        status: 413,
        errcode: 'M_TOO_LARGE',
      },
      {
        name: 'masquerading outside the namespace',
        request: () => [url, sendPath(), { token: AS_TOKEN, query: 'user_id=%40alice%3Atest.local' }],
        status: 403,
        errcode: 'M_FORBIDDEN',
      },
      {
        name: 'masquerading as a remote user',
        request: () => [url, sendPath(), { token: AS_TOKEN, query: 'user_id=%40bridge_x%3Aelsewhere.org' }],
        status: 403,
        errcode: 'M_FORBIDDEN',
      },
      {
        name: 'a user_id that is not a user ID',
        request: () => [url, sendPath(), { token: AS_TOKEN, query: 'user_id=bridge_x' }],
        status: 400,
        errcode: 'M_INVALID_PARAM',
      },
      {
        name: 'an invalid ts',
        request: () => [url, sendPath(), { token: AS_TOKEN, query: 'ts=yesterday' }],
        status: 400,
        errcode: 'M_INVALID_PARAM',
      },
      {
        name: 'an unknown path',
        request: () => [url, '/_matrix/client/v3/nothing/here', { token: alice.token }],
        status: 404,
        errcode: 'M_UNRECOGNIZED',
      },
      {
        name: 'a wrong method on the send path',
        request: () => [url, sendPath(), { token: alice.token, method: 'GET' }],
        status: 405,
        errcode: 'M_UNRECOGNIZED',
      },
      {
        name: 'POST of a non-object (Complement TestJson special values)',
        request: () => [url, sendPath(), { token: alice.token, method: 'POST', body: '{"body": NaN}' }],
        status: 400,
        errcode: 'M_NOT_JSON',
      },
      {
        name: 'a soft-logged-out token (from the homeserver)',
        request: () => [url, sendPath(), { token: 'hs-soft' }],
        status: 401,
        errcode: 'M_UNKNOWN_TOKEN',
      },
    ];
    for (const { name, request, status, errcode } of cases) {
      it(`answers ${status} ${errcode} for ${name}, as JSON with CORS headers`, async () => {
        const res = await put(...request());
        assert.equal(res.status, status, JSON.stringify(res.body));
        assert.equal(res.body.errcode, errcode);
        assert.equal(typeof res.body.error, 'string');
        assert.equal(res.headers.get('access-control-allow-origin'), '*');
        assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      });
    }

    it('passes soft_logout through', async () => {
      const res = await put(url, sendPath(), { token: 'hs-soft' });
      assert.equal(res.body.soft_logout, true);
    });

    it('answers a CORS preflight', async () => {
      const res = await fetch(`${url}${sendPath()}`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.element.io', 'access-control-request-method': 'PUT' },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      assert.match(res.headers.get('access-control-allow-methods') ?? '', /PUT/);
      assert.match(res.headers.get('access-control-allow-headers') ?? '', /Authorization/);
    });

    it('answers 503 with Retry-After when no consumer answers in time', async () => {
      const lonely = await AppProcess.start('gateway', isolatedEnv({ SEND_TIMEOUT_MS: '500' }));
      try {
        const started = Date.now();
        const res = await put(lonely.url, sendPath(), { token: alice.token });
        assert.equal(res.status, 503);
        assert.equal(res.body.errcode, 'M_UNKNOWN');
        assert.ok(Number(res.headers.get('retry-after')) >= 1);
        // The bound is 500 ms; the margin is for a loaded machine, far below a wait that never ends.
        assert.ok(Date.now() - started < 500 + 4000, 'within the configured wait');
      } finally {
        await lonely.stop();
      }
    });
  });

  describe('accepted sends', () => {
    const accept = async (
      request: Parameters<typeof put>,
      check?: (event: { sender: string; origin_server_ts: number }, headers: Record<string, string>) => void,
    ) => {
      const res = await put(...request);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.match(String(res.body.event_id), EVENT_ID_PATTERN);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      if (check) eventsToCheck.set(String(res.body.event_id), check);
      return res;
    };

    it('takes the token from the access_token query parameter', async () => {
      await accept([url, sendPath(), { query: `access_token=${alice.token}` }], (e) =>
        assert.equal(e.sender, alice.user_id),
      );
    });

    it('answers 200 up to the nesting limit and 400 M_BAD_JSON past it, never 5xx, for objects, arrays and both', async () => {
      const shapes: Record<string, (depth: number) => string> = {
        objects: (depth) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
        arrays: (depth) => `{"a":${'['.repeat(depth - 1)}1${']'.repeat(depth - 1)}}`,
        mixed: (depth) =>
          `{"a":${'[{"a":'.repeat((depth - 1) >> 1)}${(depth - 1) % 2 ? '[]' : '1'}${'}]'.repeat((depth - 1) >> 1)}}`,
      };
      const wrong: string[] = [];
      for (const [name, shape] of Object.entries(shapes)) {
        for (let depth = MAX_JSON_DEPTH - 8; depth <= MAX_JSON_DEPTH + 7; depth++) {
          const body = shape(depth);
          assert.doesNotThrow(() => JSON.parse(body), `${name} ${depth} is well-formed JSON`);
          // A type of no rule of its own: only the JSON rules judge these bodies.
          const res = await put(url, sendPath(randomUUID(), ROOM, 'org.example.nested'), { token: alice.token, body });
          const expected = depth <= MAX_JSON_DEPTH ? '200' : '400 M_BAD_JSON';
          const got = res.status === 200 ? '200' : `${res.status} ${String(res.body.errcode)}`;
          if (got !== expected) wrong.push(`${name} at depth ${depth}: ${got}, expected ${expected}`);
        }
      }
      assert.deepEqual(wrong, []);
    });

    it('reads the body whatever Content-Type says, or without one', async () => {
      await accept([url, sendPath(), { token: alice.token, headers: { 'content-type': 'text/plain' } }]);
      await accept([url, sendPath(), { token: alice.token, body: Buffer.from('{"msgtype":"m.text","body":"raw"}') }]);
    });

    it('serves the r0 prefix', async () => {
      await accept([url, sendPath(randomUUID(), ROOM, 'm.room.message', '/_matrix/client/r0'), { token: alice.token }]);
    });

    it('ignores ts from a user that is not an application service', async () => {
      await accept([url, sendPath(), { token: alice.token, query: 'ts=1234' }], (e) =>
        assert.ok(e.origin_server_ts > 1_700_000_000_000),
      );
    });

    it('lets an application service send as itself, as a namespaced user, on a device, and at a given ts', async () => {
      await accept([url, sendPath(), { token: AS_TOKEN }], (e) => assert.equal(e.sender, '@bridgebot:test.local'));
      await accept([url, sendPath(), { token: AS_TOKEN, query: 'user_id=%40bridge_alice%3Atest.local' }], (e, h) => {
        assert.equal(e.sender, '@bridge_alice:test.local');
        assert.equal(h[EVENT_HEADERS.deviceId], undefined);
      });
      await accept(
        [url, sendPath(), { token: AS_TOKEN, query: 'user_id=%40bridge_alice%3Atest.local&device_id=BRIDGEDEV' }],
        (e, h) => assert.equal(h[EVENT_HEADERS.deviceId], 'BRIDGEDEV'),
      );
      await accept(
        [
          url,
          sendPath(),
          { token: AS_TOKEN, query: 'user_id=%40bridge_alice%3Atest.local&org.matrix.msc3202.device_id=OLDDEV' },
        ],
        (e, h) => assert.equal(h[EVENT_HEADERS.deviceId], 'OLDDEV'),
      );
      await accept([url, sendPath(), { token: AS_TOKEN, query: 'user_id=%40bridge_alice%3Atest.local&ts=1234' }], (e) =>
        assert.equal(e.origin_server_ts, 1234),
      );
    });

    it('scopes an application service transaction by the masqueraded user', async () => {
      const txn = randomUUID();
      const one = await accept([url, sendPath(txn), { token: AS_TOKEN, query: 'user_id=%40bridge_one%3Atest.local' }]);
      const two = await accept([url, sendPath(txn), { token: AS_TOKEN, query: 'user_id=%40bridge_two%3Atest.local' }]);
      const oneAgain = await accept([
        url,
        sendPath(txn),
        { token: AS_TOKEN, query: 'user_id=%40bridge_one%3Atest.local' },
      ]);
      assert.notEqual(one.body.event_id, two.body.event_id);
      assert.equal(oneAgain.body.event_id, one.body.event_id);
    });

    it('checks unknown tokens with the homeserver, caches the answer, and makes one call for concurrent look-ups', async () => {
      const before = homeserver.whoamiCalls;
      const results = await Promise.all(Array.from({ length: 10 }, () => put(url, sendPath(), { token: 'hs-carol' })));
      assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
      await accept([url, sendPath(), { token: 'hs-carol' }], (e, h) => {
        assert.equal(e.sender, '@carol:test.local');
        assert.equal(h[EVENT_HEADERS.deviceId], 'CAROLDEV');
      });
      assert.equal(homeserver.whoamiCalls - before, 1, 'one upstream call for eleven sends');
      const unknownBefore = homeserver.whoamiCalls;
      await put(url, sendPath(), { token: 'hs-unknown-1' });
      await put(url, sendPath(), { token: 'hs-unknown-1' });
      assert.equal(homeserver.whoamiCalls - unknownBefore, 1, 'an unknown token is remembered briefly too');
    });

    it('scopes a token without a device by a keyed hash: the log never holds a bare hash of the token', async () => {
      const token = 'hs-erin-short';
      const scope = transactionScope({ userId: '@erin:test.local', tokenHash: sha256Base64Url(token) });
      await accept([url, sendPath(), { token }], (e, h) => {
        assert.equal(
          h[EVENT_HEADERS.scopeHash],
          scopeHash({ userId: e.sender, tokenHash: sha256Base64Url(token) }, Buffer.from(TEST_SCOPE_HASH_SECRET)),
        );
        assert.notEqual(h[EVENT_HEADERS.scopeHash], shortHash(scope));
      });
    });

    it('asks the homeserver again once a cached answer has expired (WHOAMI_CACHE_TTL_MS)', async () => {
      const gateway = await AppProcess.start('gateway', {
        ...pipeline.env,
        MATRIX_HOMESERVER_URL: homeserverUrl,
        WHOAMI_CACHE_TTL_MS: '1000',
      });
      try {
        const calls = homeserver.whoamiCalls;
        assert.equal((await put(gateway.url, sendPath(), { token: 'hs-dave' })).status, 200);
        assert.equal((await put(gateway.url, sendPath(), { token: 'hs-dave' })).status, 200);
        assert.equal(homeserver.whoamiCalls - calls, 1, 'cached');
        await new Promise((done) => setTimeout(done, 1200));
        assert.equal((await put(gateway.url, sendPath(), { token: 'hs-dave' })).status, 200);
        assert.equal(
          homeserver.whoamiCalls - calls,
          2,
          'asked again after the TTL: a revoked token stops working by then',
        );
      } finally {
        await gateway.stop();
      }
    });

    it('answers a retryable 503 within the bound when the homeserver is slow', async () => {
      const started = Date.now();
      const res = await put(url, sendPath(), { token: 'hs-slow' });
      assert.equal(res.status, 503);
      assert.equal(res.body.errcode, 'M_UNKNOWN');
      assert.ok(res.headers.get('retry-after'));
      assert.ok(Date.now() - started < 4500, 'before the homeserver (5 s) answers: WHOAMI_TIMEOUT_MS is 500');
    });

    it('answers a retryable 503 when the homeserver is down', async () => {
      const gateway = await AppProcess.start('gateway', {
        ...pipeline.env,
        MATRIX_HOMESERVER_URL: 'http://127.0.0.1:9',
      });
      try {
        const res = await put(gateway.url, sendPath(), { token: 'hs-dave' });
        assert.equal(res.status, 503);
        assert.ok(res.headers.get('retry-after'));
      } finally {
        await gateway.stop();
      }
    });

    it('stores every event with the sender, device and timestamp that the auth path gave', async () => {
      const log = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
        atLeast: eventsToCheck.size,
      });
      const byId = new Map(log.map((e) => [e.event.event_id, e]));
      for (const [eventId, check] of eventsToCheck) {
        const logged = byId.get(eventId);
        assert.ok(logged, `${eventId} is in the event log`);
        check(logged.event, logged.headers);
      }
    });
  });

  describe('rate limits (per gateway instance)', () => {
    let limited: AppProcess;
    before(async () => {
      // One token every 20 s: the four sends of a burst cannot earn a new one, however slow the machine.
      limited = await AppProcess.start('gateway', {
        ...pipeline.env,
        RATE_LIMIT_PER_SECOND: '0.05',
        RATE_LIMIT_BURST: '2',
      });
    });
    after(async () => {
      await limited?.stop();
    });

    const burst = async (token: string, query?: string) => {
      const results = [];
      for (let i = 0; i < 4; i++) results.push(await put(limited.url, sendPath(), { token, query }));
      return results;
    };

    it('answers 429 M_LIMIT_EXCEEDED with retry_after_ms and Retry-After past the burst', async () => {
      const results = await burst(TEST_USERS.bob.token);
      assert.deepEqual(
        results.map((r) => r.status),
        [200, 200, 429, 429],
      );
      const limitedAnswer = results[2];
      assert.equal(limitedAnswer.body.errcode, 'M_LIMIT_EXCEEDED');
      assert.ok(Number(limitedAnswer.body.retry_after_ms) > 0 && Number(limitedAnswer.body.retry_after_ms) <= 20000);
      assert.equal(
        limitedAnswer.headers.get('retry-after'),
        String(Math.ceil(Number(limitedAnswer.body.retry_after_ms) / 1000)),
      );
    });

    it('limits masqueraded users of a rate-limited registration, per user', async () => {
      const results = await burst(AS_TOKEN, 'user_id=%40bridge_limited%3Atest.local');
      assert.deepEqual(
        results.map((r) => r.status),
        [200, 200, 429, 429],
      );
    });

    it('exempts application service senders and registrations with rate_limited: false', async () => {
      assert.deepEqual(
        (await burst(AS_TOKEN)).map((r) => r.status),
        [200, 200, 200, 200],
      );
      assert.deepEqual(
        (await burst(AS_UNLIMITED_TOKEN, 'user_id=%40free_user%3Atest.local')).map((r) => r.status),
        [200, 200, 200, 200],
      );
    });
  });

  describe('content and identifiers as the reference homeserver judges them', () => {
    /** The room's own ID, for the tombstone rule. */
    const RULES_ROOM = '!rules:test.local';
    const text = { msgtype: 'm.text', body: 'hi' };
    // status and errcode as Synapse answers (synapse/events/validator.py, synapse/handlers/message.py): a bare
    // SynapseError(400) is M_UNKNOWN.
    const refused: { name: string; type: string; body: unknown; status: number; errcode: string }[] = [
      {
        name: 'an annotation without a key',
        type: 'm.reaction',
        body: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$x' } },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an annotation whose key is not a string',
        type: 'm.reaction',
        body: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$x', key: 1 } },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an annotation key over 500 code points',
        type: 'm.reaction',
        body: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$x', key: 'k'.repeat(501) } },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'a lone surrogate in a string',
        type: 'm.room.message',
        body: '{"msgtype":"m.text","body":"lone \\ud800 here"}',
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'a lone surrogate in a key',
        type: 'm.room.message',
        body: '{"msgtype":"m.text","body":"x","lone \\udc00":1}',
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'm.mentions.user_ids that is not a list',
        type: 'm.room.message',
        body: { ...text, 'm.mentions': { user_ids: '@alice:example.org' } },
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'm.mentions.room that is not a boolean',
        type: 'm.room.message',
        body: { ...text, 'm.mentions': { room: 'yes' } },
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'm.mentions that is not an object',
        type: 'org.example.custom',
        body: { 'm.mentions': ['@alice:example.org'] },
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'an m.room.message without body',
        type: 'm.room.message',
        body: { msgtype: 'm.text' },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.message without msgtype',
        type: 'm.room.message',
        body: { body: 'x' },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.message whose body is not a string',
        type: 'm.room.message',
        body: { msgtype: 'm.text', body: 1 },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.topic (a state event) as a message',
        type: 'm.room.topic',
        body: { topic: 't' },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.name (a state event) as a message',
        type: 'm.room.name',
        body: { name: 'n' },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.member as a message',
        type: 'm.room.member',
        body: { membership: 'join' },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.tombstone as a message',
        type: 'm.room.tombstone',
        body: { replacement_room: '!new:test.local' },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.tombstone naming its own room',
        type: 'm.room.tombstone',
        body: { replacement_room: RULES_ROOM },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.retention as a message',
        type: 'm.room.retention',
        body: { max_lifetime: 1000 },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.create into an existing room',
        type: 'm.room.create',
        body: { room_version: '11' },
        status: 403,
        errcode: 'M_FORBIDDEN',
      },
      {
        name: 'power levels that are not integers',
        type: 'm.room.power_levels',
        body: { users_default: '0' },
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'power levels whose users is not a map of integers',
        type: 'm.room.power_levels',
        body: { users: { '@a:test.local': true } },
        status: 400,
        errcode: 'M_BAD_JSON',
      },
      {
        name: 'an m.room.aliases entry over 255 characters',
        type: 'm.room.aliases',
        body: { aliases: [`#${'a'.repeat(255)}`] },
        status: 400,
        errcode: 'M_INVALID_PARAM',
      },
      {
        name: 'an m.room.server_acl that denies this server',
        type: 'm.room.server_acl',
        body: { allow: ['*'], deny: ['test.local'] },
        status: 400,
        errcode: 'M_UNKNOWN',
      },
      {
        name: 'an m.room.canonical_alias whose alias is not a string',
        type: 'm.room.canonical_alias',
        body: { alias: 5 },
        status: 400,
        errcode: 'M_INVALID_PARAM',
      },
      {
        name: 'an m.room.canonical_alias whose alt_aliases is not a list',
        type: 'm.room.canonical_alias',
        body: { alt_aliases: '#a:test.local' },
        status: 400,
        errcode: 'M_INVALID_PARAM',
      },
    ];
    for (const { name, type, body, status, errcode } of refused) {
      it(`answers ${status} ${errcode} for ${name}`, async () => {
        const res = await sendEvent(url, alice.token, RULES_ROOM, type, `rules-${randomUUID()}`, body);
        assert.equal(`${res.status} ${String(res.body.errcode)}`, `${status} ${errcode}`, JSON.stringify(res.body));
        assert.equal(typeof res.body.error, 'string');
      });
    }

    const accepted: { name: string; room: string; type: string; body: unknown }[] = [
      {
        name: 'a room ID with a space and an emoji',
        room: '!odd room 🐈:example.org',
        type: 'm.room.message',
        body: text,
      },
      {
        name: 'a room ID with control characters',
        room: '!tab\there\u0007:example.org',
        type: 'm.room.message',
        body: text,
      },
      { name: 'a room v12 ID (no server part)', room: `!${'Ab3_-'.repeat(8)}xyz`, type: 'm.room.message', body: text },
      { name: 'an event type with a control character', room: RULES_ROOM, type: 'org.example.\u0001odd', body: {} },
      {
        name: 'a surrogate pair',
        room: RULES_ROOM,
        type: 'm.room.message',
        body: '{"msgtype":"m.text","body":"\\ud83d\\ude00"}',
      },
      {
        name: 'an annotation with a key',
        room: RULES_ROOM,
        type: 'm.reaction',
        body: { 'm.relates_to': { rel_type: 'm.annotation', event_id: `$${randomUUID()}`, key: '👍' } },
      },
      {
        name: 'well-formed m.mentions',
        room: RULES_ROOM,
        type: 'm.room.message',
        body: { ...text, 'm.mentions': { user_ids: ['@alice:example.org'], room: false } },
      },
      {
        name: 'power levels of integers',
        room: RULES_ROOM,
        type: 'm.room.power_levels',
        body: { users: { '@a:test.local': 100 }, users_default: 0 },
      },
      {
        name: 'an m.room.server_acl that lets this server in',
        room: RULES_ROOM,
        type: 'm.room.server_acl',
        body: { allow: ['*.local'], deny: ['evil.example'] },
      },
    ];
    for (const { name, room, type, body } of accepted) {
      it(`accepts ${name} and stores it as sent`, async () => {
        const res = await sendEvent(url, alice.token, room, type, `rules-${randomUUID()}`, body);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        const eventId = String(res.body.event_id);
        assert.match(eventId, EVENT_ID_PATTERN);
        const [logged] = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
          keep: (event) => event.event_id === eventId,
          atLeast: 1,
        });
        assert.equal(logged.event.room_id, room);
        assert.equal(logged.event.type, type);
        assert.deepEqual(logged.event.content, typeof body === 'string' ? JSON.parse(body) : body);
      });
    }

    for (const [name, room, status, errcode] of [
      ['a NUL in the localpart', '!a\u0000b:test.local', 400, 'M_INVALID_PARAM'],
      ['no server part and not a room v12 hash', '!short', 400, 'M_INVALID_PARAM'],
      ['a server part that is no server name', '!a:not a server', 400, 'M_INVALID_PARAM'],
      ['over 255 bytes', `!${'é'.repeat(122)}:test.local`, 413, 'M_TOO_LARGE'],
    ] as const) {
      it(`refuses a room ID with ${name}: ${status} ${errcode}`, async () => {
        const res = await sendEvent(url, alice.token, room, 'm.room.message', `rules-${randomUUID()}`, text);
        assert.equal(`${res.status} ${String(res.body.errcode)}`, `${status} ${errcode}`);
      });
    }

    it('accepts historical user IDs from an application service, and refuses a NUL in one', async () => {
      const historical = '@bridge_Ünïcode user:test.local';
      const res = await put(url, sendPath(), { token: AS_TOKEN, query: `user_id=${encodeURIComponent(historical)}` });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const [logged] = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
        keep: (event) => event.event_id === res.body.event_id,
        atLeast: 1,
      });
      assert.equal(logged.event.sender, historical);
      const nul = await put(url, sendPath(), {
        token: AS_TOKEN,
        query: `user_id=${encodeURIComponent('@bridge_\u0000:test.local')}`,
      });
      assert.equal(`${nul.status} ${String(nul.body.errcode)}`, '400 M_INVALID_PARAM');
    });
  });

  it('keeps the same event_id for a retry through the helper client too', async () => {
    const first = await sendEvent(url, alice.token, ROOM, 'm.room.message', 'helper-txn', {
      msgtype: 'm.text',
      body: 'x',
    });
    const again = await sendEvent(url, alice.token, ROOM, 'm.room.message', 'helper-txn', {
      msgtype: 'm.text',
      body: 'y',
    });
    assert.match(String(first.body.event_id), EVENT_ID_PATTERN, 'an event, not two failures that look alike');
    assert.equal(again.body.event_id, first.body.event_id);
  });
});
