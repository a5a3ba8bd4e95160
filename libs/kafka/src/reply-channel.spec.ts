import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isReplyTopic, newReplyTopic } from './reply-channel';

describe('reply topic names', () => {
  it('tells a gateway instance’s reply topic from any other topic with the same prefix', () => {
    const topic = newReplyTopic('matrix.send.replies.', 'gw-7f9c.example.org', 4242);
    assert.match(topic, /^matrix\.send\.replies\.gw-7f9c-example-org-4242-[0-9a-f]{8}$/);
    assert.equal(isReplyTopic('matrix.send.replies.', topic), true);
    // A prefix set too wide must not make the orphan collector take the pipeline's topics for reply topics.
    for (const other of ['matrix.send.commands', 'matrix.send.txns', 'matrix.room.events', 'matrix.send.dead-letters'])
      assert.equal(isReplyTopic('matrix.', other), false, other);
    assert.equal(isReplyTopic('matrix.send.replies.', `${topic}.reader`), false);
    assert.equal(isReplyTopic('other.', topic), false);
  });
});
