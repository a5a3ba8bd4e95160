import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EVENT_HEADERS } from '@app/contracts';
import { EVENT_ID_PATTERN } from '@app/matrix';
import { botSdk } from './support/bot-sdk';
import { readEventLog } from './support/event-log';
import { Pipeline, startPipeline, TEST_USERS } from './support/pipeline';

const AS_TOKEN = 'as-token-sdk-bridge-01';

describe('real Matrix SDKs against the gateway', () => {
  let pipeline: Pipeline;
  before(async () => {
    const registration = join(tmpdir(), `sdk-bridge-${randomUUID()}.yaml`);
    writeFileSync(
      registration,
      `id: sdk-bridge\nas_token: ${AS_TOKEN}\nhs_token: hs\nsender_localpart: sdkbot\nnamespaces:\n  users:\n    - exclusive: true\n      regex: '@sdk_.*:test\\.local'\nrate_limited: false\n`,
    );
    pipeline = await startPipeline({ MATRIX_APPSERVICE_FILES: registration });
  });
  after(async () => {
    await pipeline?.stop();
  });

  it('matrix-js-sdk sends, and a retry of the same txnId returns the same event_id', async () => {
    const { createClient, EventType, MsgType } = await import('matrix-js-sdk');
    const { alice } = TEST_USERS;
    const client = createClient({
      baseUrl: pipeline.gateway.url,
      accessToken: alice.token,
      userId: alice.user_id,
      deviceId: alice.device_id,
    });
    const txnId = client.makeTxnId();
    const room = `!js-sdk-${randomUUID()}:test.local`;
    const first = await client.sendEvent(
      room,
      EventType.RoomMessage,
      { msgtype: MsgType.Text, body: 'from matrix-js-sdk' },
      txnId,
    );
    assert.match(first.event_id, EVENT_ID_PATTERN);
    const retry = await client.sendEvent(
      room,
      EventType.RoomMessage,
      { msgtype: MsgType.Text, body: 'from matrix-js-sdk' },
      txnId,
    );
    assert.equal(retry.event_id, first.event_id);
    client.stopClient();
  });

  it('matrix-bot-sdk sends as a masqueraded user (impersonateUserId) on a device', async () => {
    const client = new botSdk.MatrixClient(pipeline.gateway.url, AS_TOKEN);
    client.impersonateUserId('@sdk_puppet:test.local', 'PUPPETDEV');
    const room = `!bot-sdk-${randomUUID()}:test.local`;
    const eventId = await client.sendMessage(room, { msgtype: 'm.text', body: 'from matrix-bot-sdk' });
    assert.match(eventId, EVENT_ID_PATTERN);

    const [logged] = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, {
      keep: (event) => event.room_id === room,
      atLeast: 1,
    });
    assert.equal(logged.event.event_id, eventId);
    assert.equal(logged.event.sender, '@sdk_puppet:test.local');
    assert.equal(logged.headers[EVENT_HEADERS.deviceId], 'PUPPETDEV');
  });

  it('matrix-bot-sdk gets a Matrix error it understands for a user outside the namespace', async () => {
    const client = new botSdk.MatrixClient(pipeline.gateway.url, AS_TOKEN);
    client.impersonateUserId('@someone_else:test.local');
    await assert.rejects(
      client.sendMessage('!x:test.local', { msgtype: 'm.text', body: 'no' }),
      (error: { errcode?: string; statusCode?: number }) => {
        assert.equal(error.errcode, 'M_FORBIDDEN');
        assert.equal(error.statusCode, 403);
        return true;
      },
    );
  });
});
