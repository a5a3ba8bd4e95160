import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MatrixError } from '@app/matrix';
import { HomeserverTokens } from './homeserver-tokens';

/** A homeserver that knows the tokens in `users`, answers when `release` is called (or at once), and counts calls. */
function fakeHomeserver(users: Record<string, string>, options: { hold?: boolean } = {}) {
  const calls: string[] = [];
  const held: (() => void)[] = [];
  const fetch = (async (_url: URL, init: { headers: { authorization: string } }) => {
    const token = init.headers.authorization.replace('Bearer ', '');
    calls.push(token);
    if (options.hold) await new Promise<void>((release) => held.push(release));
    const userId = users[token];
    return userId
      ? new Response(JSON.stringify({ user_id: userId }), { status: 200 })
      : new Response(JSON.stringify({ errcode: 'M_UNKNOWN_TOKEN', error: 'no' }), { status: 401 });
  }) as unknown as typeof globalThis.fetch;
  return { fetch, calls, releaseAll: () => held.splice(0).forEach((release) => release()) };
}

const errcodeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (error: MatrixError) => `${error.status} ${error.errcode}`,
  );

describe('homeserver token look-ups', () => {
  it('answers a retryable 503, not a sender, when whoami names an invalid user or device ID', async () => {
    const answers: Record<string, object> = {
      good: { user_id: '@good:x', device_id: 'DEVICE' },
      longDevice: { user_id: '@good:x', device_id: 'D'.repeat(20_000) },
      badUser: { user_id: 'not-a-user-id' },
    };
    const fetch = (async (_url: URL, init: { headers: { authorization: string } }) =>
      new Response(JSON.stringify(answers[init.headers.authorization.replace('Bearer ', '')]), {
        status: 200,
      })) as unknown as typeof globalThis.fetch;
    const tokens = new HomeserverTokens({
      baseUrl: 'http://hs',
      positiveTtlMs: 60_000,
      negativeTtlMs: 60_000,
      timeoutMs: 1000,
      fetch,
    });
    assert.deepEqual(await tokens.lookup('good'), {
      userId: '@good:x',
      deviceId: 'DEVICE',
      tokenHash: (await tokens.lookup('good')).tokenHash,
    });
    for (const token of ['longDevice', 'badUser']) {
      await assert.rejects(tokens.lookup(token), (error: MatrixError) => {
        assert.equal(`${error.status} ${error.errcode}`, '503 M_UNKNOWN');
        assert.ok(error.retryAfterSeconds !== undefined && error.retryAfterSeconds > 0, 'retryable');
        assert.ok(!error.message.includes('DDDD') && !error.message.includes('not-a-user'), error.message);
        return true;
      });
    }
  });

  it('keeps valid tokens cached while a flood of unknown tokens comes and goes', async () => {
    const homeserver = fakeHomeserver({ good: '@good:x' });
    const tokens = new HomeserverTokens({
      baseUrl: 'http://hs',
      positiveTtlMs: 60_000,
      negativeTtlMs: 60_000,
      timeoutMs: 1000,
      maxEntries: 10,
      maxUnknownEntries: 5,
      fetch: homeserver.fetch,
    });
    assert.equal((await tokens.lookup('good')).userId, '@good:x');
    for (let i = 0; i < 50; i++) assert.equal(await errcodeOf(tokens.lookup(`bad-${i}`)), '401 M_UNKNOWN_TOKEN');
    const calls = homeserver.calls.length;
    await tokens.lookup('good');
    assert.equal(homeserver.calls.length, calls, 'the valid token is still cached');
    await errcodeOf(tokens.lookup('bad-0'));
    assert.equal(homeserver.calls.length, calls + 1, 'the oldest unknown token was evicted, from its own cache');
  });

  it('checks at most maxConcurrent tokens at once, and answers the rest with a retryable 503', async () => {
    const homeserver = fakeHomeserver({ a: '@a:x', b: '@b:x', c: '@c:x' }, { hold: true });
    const tokens = new HomeserverTokens({
      baseUrl: 'http://hs',
      positiveTtlMs: 60_000,
      negativeTtlMs: 1000,
      timeoutMs: 5000,
      maxConcurrent: 2,
      fetch: homeserver.fetch,
    });
    const first = [tokens.lookup('a'), tokens.lookup('b'), tokens.lookup('a')];
    assert.equal(await errcodeOf(tokens.lookup('c')), '503 M_UNKNOWN');
    homeserver.releaseAll();
    assert.deepEqual(
      (await Promise.all(first)).map((sender) => sender.userId),
      ['@a:x', '@b:x', '@a:x'],
    );
    assert.deepEqual(homeserver.calls, ['a', 'b'], 'one call per token, none for the refused one');
    const c = tokens.lookup('c');
    await new Promise((done) => setImmediate(done));
    homeserver.releaseAll();
    assert.equal((await c).userId, '@c:x', 'a slot is free again');
  });
  it('lets one client start at most maxConcurrentPerClient look-ups, leaving the other slots to other clients', async () => {
    const homeserver = fakeHomeserver({ good: '@good:x' }, { hold: true });
    const tokens = new HomeserverTokens({
      baseUrl: 'http://hs',
      positiveTtlMs: 60_000,
      negativeTtlMs: 1000,
      timeoutMs: 5000,
      maxConcurrent: 4,
      maxConcurrentPerClient: 2,
      fetch: homeserver.fetch,
    });
    const flood = Array.from({ length: 10 }, (_, i) => errcodeOf(tokens.lookup(`random-${i}`, '203.0.113.9')));
    const good = tokens.lookup('good', '198.51.100.7');
    await new Promise((done) => setImmediate(done));
    assert.equal(homeserver.calls.length, 3, 'two calls for the flooding client, one for the other');
    homeserver.releaseAll();
    assert.equal((await good).userId, '@good:x');
    const answers = await Promise.all(flood);
    assert.equal(answers.filter((answer) => answer === '503 M_UNKNOWN').length, 8);
    assert.equal(answers.filter((answer) => answer === '401 M_UNKNOWN_TOKEN').length, 2);
  });

  it('lets a cached answer expire after its TTL even when the wall clock is stepped back an hour', async () => {
    const wallClock = Date.now;
    let step = 0;
    Date.now = () => wallClock() + step;
    try {
      const homeserver = fakeHomeserver({ good: '@good:x' });
      const tokens = new HomeserverTokens({
        baseUrl: 'http://hs',
        positiveTtlMs: 100,
        negativeTtlMs: 100,
        timeoutMs: 1000,
        fetch: homeserver.fetch,
      });
      await tokens.lookup('good');
      await tokens.lookup('good');
      assert.equal(homeserver.calls.length, 1, 'the premise: the answer is cached');
      step = -3_600_000;
      await new Promise((done) => setTimeout(done, 150));
      await tokens.lookup('good');
      assert.equal(homeserver.calls.length, 2, 'asked again after the TTL, not an hour later');
    } finally {
      Date.now = wallClock;
    }
  });
});
