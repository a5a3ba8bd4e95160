import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EVENT_ID_PATTERN } from '@app/matrix';
import { EVENT_HEADERS } from '@app/contracts';
import { readEventLog } from './support/event-log';
import { sendEvent } from './support/matrix-client';
import { Pipeline, startPipeline, TEST_USERS } from './support/pipeline';

const { alice } = TEST_USERS;

describe('a send round-trip through a real broker', () => {
  let pipeline: Pipeline;
  before(async () => {
    pipeline = await startPipeline();
  });
  after(async () => {
    await pipeline?.stop();
  });

  it('answers 200 with a room v4 event ID, and the same ID again for the same transaction', async () => {
    const content = { msgtype: 'm.text', body: 'hello' };
    const first = await sendEvent(
      pipeline.gateway.url,
      alice.token,
      '!round:test.local',
      'm.room.message',
      'txn-1',
      content,
    );
    assert.equal(first.status, 200);
    assert.match(String(first.body.event_id), EVENT_ID_PATTERN);
    const again = await sendEvent(
      pipeline.gateway.url,
      alice.token,
      '!round:test.local',
      'm.room.message',
      'txn-1',
      content,
    );
    assert.deepEqual(again, { ...again, status: 200, body: { event_id: first.body.event_id } });

    const log = await readEventLog(pipeline.env.KAFKA_BROKERS, pipeline.env.KAFKA_TOPIC_EVENTS, { atLeast: 1 });
    assert.equal(log.length, 1, 'the retry did not append a second event');
    const [{ event, headers }] = log;
    assert.deepEqual(
      { ...event, origin_server_ts: 0 },
      {
        event_id: first.body.event_id,
        room_id: '!round:test.local',
        sender: alice.user_id,
        type: 'm.room.message',
        content,
        origin_server_ts: 0,
      },
    );
    assert.ok(Math.abs(event.origin_server_ts - Date.now()) < 60000, 'origin_server_ts is the receive time');
    assert.equal(headers[EVENT_HEADERS.txnId], 'txn-1');
    assert.equal(headers[EVENT_HEADERS.deviceId], alice.device_id);
  });

  it('serves the r0 prefix too', async () => {
    const res = await sendEvent(
      pipeline.gateway.url,
      alice.token,
      '!round:test.local',
      'm.room.message',
      'txn-r0',
      { msgtype: 'm.text', body: 'r0' },
      '/_matrix/client/r0',
    );
    assert.equal(res.status, 200);
    assert.match(String(res.body.event_id), EVENT_ID_PATTERN);
  });
});
