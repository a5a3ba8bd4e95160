import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EVENT_HEADERS } from '@app/contracts';
import { readEventLog } from './support/event-log';
import { AppProcess, isolatedEnv, Pipeline, startPipeline } from './support/pipeline';

const ROOM = '!appservice-limits:test.local';
const BRIDGE_TOKEN = 'as-token-limits-bridge';

/** Registration files, one a service, as an operator writes them; returns the MATRIX_APPSERVICE_FILES value. */
function registrations(services: { id: string; token: string; regex: string }[]): string {
  return services
    .map(({ id, token, regex }) => {
      const file = join(tmpdir(), `${id}-${randomUUID()}.yaml`);
      writeFileSync(
        file,
        `id: ${id}\nas_token: ${token}\nhs_token: hs-${token}\nsender_localpart: ${id}bot\n` +
          `namespaces:\n  users:\n    - exclusive: true\n      regex: ${JSON.stringify(regex)}\nrate_limited: false\n`,
      );
      return file;
    })
    .join(',');
}

async function sendAs(base: string, query: string, signal?: AbortSignal) {
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(ROOM)}/send/m.room.message/${randomUUID()}`;
  const res = await fetch(`${base}${path}?${query}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${BRIDGE_TOKEN}` },
    body: '{"msgtype":"m.text","body":"hi"}',
    signal,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('what one application service token can make a gateway do', () => {
  let pipeline: Pipeline;
  let url: string;

  before(async () => {
    pipeline = await startPipeline({
      MATRIX_APPSERVICE_FILES: registrations([
        // The namespace of the issue: a backtracking engine runs for minutes on `@bridge_aaaa…!:test.local`.
        { id: 'bridge', token: BRIDGE_TOKEN, regex: '@bridge_(a+)+:test\\.local|@bridge_[a-z0-9]+_user:test\\.local' },
        { id: 'everyone', token: 'as-token-limits-everyone', regex: '' },
        { id: 'anyserver', token: 'as-token-limits-anyserver', regex: '@loose_.*' },
      ]),
    });
    url = pipeline.gateway.url;
  });
  after(async () => {
    await pipeline?.stop();
  });

  describe('device_id', () => {
    const user = 'user_id=%40bridge_x_user%3Atest.local';

    for (const [name, deviceQuery] of [
      ['over 255 bytes', `device_id=${'D'.repeat(256)}`],
      ['of 12,000 bytes (under the header limit)', `device_id=${'D'.repeat(12_000)}`],
      ['over 255 bytes of two-byte characters', `device_id=${encodeURIComponent('é'.repeat(128))}`],
      ['with a NUL', 'device_id=DEV%00'],
      ['empty', 'device_id='],
      ['that is not UTF-8', 'device_id=%ED%A0%80'],
      ['given twice', 'device_id=ONE&device_id=TWO'],
      ['over 255 bytes in the older org.matrix.msc3202.device_id', `org.matrix.msc3202.device_id=${'D'.repeat(256)}`],
    ]) {
      it(`answers 400 M_INVALID_PARAM to a device_id ${name}`, async () => {
        const res = await sendAs(url, `${user}&${deviceQuery}`);
        assert.equal(res.status, 400, JSON.stringify(res.body));
        assert.equal(res.body.errcode, 'M_INVALID_PARAM');
        assert.ok(String(res.body.error).length < 200, 'the error does not quote the device ID');
      });
    }

    it('takes a device_id of exactly 255 bytes and stores it whole in the event header', async () => {
      const device = `${'é'.repeat(100)}${'D'.repeat(55)}`;
      assert.equal(Buffer.byteLength(device), 255, 'premise: 255 bytes');
      const res = await sendAs(url, `${user}&device_id=${encodeURIComponent(device)}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const [logged] = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
        keep: (event) => event.event_id === res.body.event_id,
        atLeast: 1,
      });
      assert.equal(logged.headers[EVENT_HEADERS.deviceId], device);
    });
  });

  it('answers 400 M_INVALID_PARAM to a user_id whose percent-encoding is not UTF-8, instead of naming another user', async () => {
    // Decoded leniently, `%ED%A0%80` becomes U+FFFD and `@a\ufffd…:test.local` a user in this catch-all namespace.
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(ROOM)}/send/m.room.message/${randomUUID()}`;
    const res = await fetch(`${url}${path}?user_id=%40a%ED%A0%80%3Atest.local`, {
      method: 'PUT',
      headers: { authorization: 'Bearer as-token-limits-everyone' },
      body: '{"msgtype":"m.text","body":"hi"}',
    });
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal(body.errcode, 'M_INVALID_PARAM');
  });

  describe('namespace regexes', () => {
    it('answers at once a user ID that would make a backtracking engine run for minutes, and others meanwhile', async () => {
      const ok = await sendAs(url, 'user_id=%40bridge_aaa%3Atest.local');
      assert.equal(ok.status, 200, `premise: the namespace admits its users (${JSON.stringify(ok.body)})`);
      // 36 a's: 2^36 steps for a backtracking engine (about 8 minutes at the 2^26 per half second measured here).
      const hostile = sendAs(url, `user_id=%40bridge_${'a'.repeat(36)}!%3Atest.local`, AbortSignal.timeout(20_000));
      const meanwhile = sendAs(url, 'user_id=%40bridge_b_user%3Atest.local', AbortSignal.timeout(20_000));
      const [refused, other] = await Promise.all([hostile, meanwhile]);
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.equal(refused.body.errcode, 'M_FORBIDDEN');
      assert.equal(other.status, 200, JSON.stringify(other.body));
    });

    it('warns at start about a namespace that matches every user, and one with no server part', () => {
      const warnings = pipeline.gateway.output
        .join('')
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => (JSON.parse(line) as { level: number; msg: string }).msg)
        .filter((msg) => msg.includes('namespaces.users'));
      assert.ok(
        warnings.some((line) => line.includes('"everyone"') && line.includes('matches every user ID')),
        warnings.join('\n'),
      );
      assert.ok(
        warnings.some((line) => line.includes('"anyserver"') && line.includes('names no server part')),
        warnings.join('\n'),
      );
      assert.ok(!warnings.some((line) => line.includes('"bridge"')), 'no warning for an exact namespace');
    });

    it('refuses to start with a namespace RE2 cannot run, naming the registration and the regex', async () => {
      const env = isolatedEnv({
        MATRIX_APPSERVICE_FILES: registrations([
          { id: 'backref', token: 'as-token-limits-backref', regex: '@(a)\\1:x' },
        ]),
      });
      await assert.rejects(AppProcess.start('gateway', env), (error: Error) => {
        assert.match(error.message, /gateway exited \(\d+\)/);
        assert.match(
          error.message,
          /backref.*namespaces\.users\[0\]\.regex .*@\(a\).* is not a regular expression RE2 accepts/,
        );
        return true;
      });
    });
  });
});
