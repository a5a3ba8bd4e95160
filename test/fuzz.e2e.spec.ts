import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Pipeline, startPipeline, TEST_USERS } from './support/pipeline';
import { prng } from './support/prng';

const SEED = Number(process.env.FUZZ_SEED ?? 20261126);
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 3000);

describe('fuzzing the gateway', () => {
  let pipeline: Pipeline;
  before(async () => {
    pipeline = await startPipeline({ RATE_LIMIT_PER_SECOND: '0', MAX_BODY_BYTES: '70000' });
  });
  after(async () => {
    await pipeline?.stop();
  });

  const random = prng(SEED);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const chance = (p: number): boolean => random() < p;
  const int = (max: number): number => Math.floor(random() * max);
  const randomString = (max: number, alphabet = 'abcAZ09!:@$%._-~/ éü😀\u0000\u001f"\\{}[]'): string =>
    Array.from({ length: int(max) }, () => pick([...alphabet])).join('');

  const segment = (): string =>
    pick([
      () => encodeURIComponent('!room:test.local'),
      () => encodeURIComponent(`!${randomString(20)}:test.local`),
      () => encodeURIComponent(randomString(30)),
      () => '%ZZ',
      () => '%E0%A4%A',
      () => '%2F',
      () => 'x'.repeat(300),
      () => '',
      () => encodeURIComponent('m.room.message'),
      () => encodeURIComponent(`txn-${int(1e9)}`),
    ])();
  const sendPath = (): string =>
    `/_matrix/client/${pick(['v3', 'r0'])}/rooms/${segment()}/send/${segment()}/${segment()}`;
  const path = (): string =>
    pick([
      sendPath,
      sendPath,
      sendPath,
      sendPath,
      sendPath,
      () => `/_matrix/client/v3/rooms/${segment()}/send/${segment()}`,
      () => `/_matrix/client/v3/rooms/${segment()}/send/${segment()}/${segment()}/${segment()}`,
      () => `/_matrix/client/v3/${segment()}`,
      () => `//_matrix//client/v3/rooms/${segment()}/send/a/b`,
      () => `/${segment()}/${segment()}`,
      () => '/',
    ])();
  const query = (): string => {
    const params = Array.from({ length: int(4) }, () =>
      pick([
        () => `access_token=${pick([TEST_USERS.alice.token, encodeURIComponent(randomString(20)), ''])}`,
        () => `user_id=${encodeURIComponent(pick(['@x:test.local', randomString(20)]))}`,
        () => `ts=${pick(['1', '-1', '1e3', 'NaN', '99999999999999999999', encodeURIComponent(randomString(5))])}`,
        () => `user_id[a]=b`,
        () => `device_id=${encodeURIComponent(randomString(10))}`,
        () => `${encodeURIComponent(randomString(5))}=${encodeURIComponent(randomString(5))}`,
      ])(),
    );
    return params.length > 0 ? `?${params.join('&')}` : '';
  };
  const body = (): string | Buffer | undefined =>
    pick([
      () => undefined,
      () => '',
      () => JSON.stringify({ msgtype: 'm.text', body: randomString(50) }),
      () => {
        const depth = int(200);
        return `{"nested":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`;
      },
      () => `{"a":${'['.repeat(int(500))}${']'.repeat(int(500))}}`,
      () => `{"n": ${pick(['1.5', '1e400', '-0', '9007199254740993', '0x10', '01', 'NaN', 'true'])}}`,
      () => randomString(100),
      () => Buffer.from(Array.from({ length: int(200) }, () => int(256))),
      () => `{"big":"${'x'.repeat(pick([10, 65000, 69000, 80000]))}"}`,
      () => '[]',
      () => 'null',
      () => '{"__proto__": {"polluted": 1}, "constructor": {"prototype": {}}}',
    ])();
  const headers = (): Record<string, string> => {
    const h: Record<string, string> = {};
    if (chance(0.7))
      h.authorization = pick([
        `Bearer ${TEST_USERS.alice.token}`,
        `Bearer ${TEST_USERS.bob.token}`,
        'Bearer',
        'Basic abc',
        `Bearer ${'a'.repeat(5000)}`,
        'bearer  spaced  ',
      ]);
    if (chance(0.5))
      h['content-type'] = pick([
        'application/json',
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/json; charset=latin1',
      ]);
    if (chance(0.1)) h['content-encoding'] = pick(['gzip', 'br', 'identity']);
    if (chance(0.1)) h['x-forwarded-for'] = '1.2.3.4';
    return h;
  };

  it(`never answers 5xx, and always answers with Matrix JSON, to ${REQUESTS} random requests (seed ${SEED})`, async () => {
    const url = pipeline.gateway.url;
    const problems: string[] = [];
    const statuses = new Map<number, number>();
    let sendsAccepted = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < REQUESTS) {
        next++;
        const method = pick(['PUT', 'PUT', 'PUT', 'PUT', 'GET', 'POST', 'DELETE', 'PATCH', 'OPTIONS']);
        const target = `${path()}${query()}`;
        const payload = method === 'GET' ? undefined : body();
        const res = await fetch(`${url}${target}`, { method, headers: headers(), body: payload }).catch(
          (error: unknown) => ({ error }),
        );
        if ('error' in res) {
          problems.push(`${method} ${target}: no answer (${String(res.error)})`);
          continue;
        }
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const text = await res.text();
        if (method === 'PUT' && res.status === 200) sendsAccepted++;
        let json: Record<string, unknown> | null = null;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // checked below
        }
        const ok =
          res.status < 500 &&
          json !== null &&
          (res.status === 200
            ? typeof json.event_id === 'string' || (method === 'OPTIONS' && Object.keys(json).length === 0)
            : typeof json.errcode === 'string' && typeof json.error === 'string');
        if (!ok || res.headers.get('access-control-allow-origin') !== '*')
          problems.push(`${method} ${target.slice(0, 120)} → ${res.status} ${text.slice(0, 120)}`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, () => worker()));
    process.stdout.write(`# fuzz statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}\n`);
    assert.deepEqual(problems.slice(0, 20), []);
    // The body fuzzer (fuzz-body.e2e.spec.ts) is the one that reaches the event path at volume; this one mostly not.
    assert.ok(
      sendsAccepted > 0 && (statuses.get(400) ?? 0) > 0,
      'the fuzzer reached both accepted sends and rejections',
    );
  });

  it('answers malformed HTTP with a Matrix error, or closes the connection', async () => {
    const { port } = new URL(pipeline.gateway.url);
    const garbage = [
      'GARBAGE\r\n\r\n',
      'PUT /_matrix HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
      'PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`,
      'PUT / HTTP/9.9\r\n\r\n',
      '\u0000\u0001\u0002\r\n\r\n',
    ];
    let answered = 0;
    for (const raw of garbage) {
      const answer = await new Promise<string>((done) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.end(raw));
        let data = '';
        socket.on('data', (chunk) => (data += chunk.toString()));
        socket.on('close', () => done(data));
        socket.on('error', () => done(data));
      });
      if (answer === '') continue; // closed without an answer: acceptable for bytes that are not HTTP at all
      answered++;
      const [head, ...rest] = answer.split('\r\n\r\n');
      assert.match(head, /^HTTP\/1\.1 4\d\d /, raw.slice(0, 40));
      const json = JSON.parse(rest.join('\r\n\r\n')) as { errcode?: unknown };
      assert.equal(typeof json.errcode, 'string', raw.slice(0, 40));
    }
    assert.ok(answered >= 3, `most malformed requests get an answer (${answered} did)`);
  });

  it('stays healthy and keeps accepting sends afterwards', async () => {
    const ready = await fetch(`${pipeline.gateway.url}/health/ready`);
    assert.equal(ready.status, 200);
    const res = await fetch(
      `${pipeline.gateway.url}/_matrix/client/v3/rooms/!after-fuzz:test.local/send/m.room.message/after-fuzz`,
      {
        method: 'PUT',
        headers: { authorization: `Bearer ${TEST_USERS.alice.token}` },
        body: '{"msgtype":"m.text","body":"still here"}',
      },
    );
    assert.equal(res.status, 200);
  });
});
