import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { createLogger, escapeControlCharacters } from './logging';

describe('log lines', () => {
  it('escape control characters, line separators and bidirectional overrides', () => {
    assert.equal(escapeControlCharacters('a\nb\r\u0000\u001b[31m\u007f\u009b'), 'a\\x0ab\\x0d\\x00\\x1b[31m\\x7f\\x9b');
    assert.equal(escapeControlCharacters('x\u2028y\u202ez\u2066'), 'x\\u2028y\\u202ez\\u2066');
    assert.equal(escapeControlCharacters('!odd room 🐈:example.org é'), '!odd room 🐈:example.org é');
    const json = JSON.stringify({ room: '!a\u0085\u009b\u001b\u2028:x' });
    assert.equal(escapeControlCharacters(json, 'json'), '{"room":"!a\\u0085\\u009b\\u001b\\u2028:x"}');
    assert.deepEqual(JSON.parse(escapeControlCharacters(json, 'json')), JSON.parse(json), 'still the same JSON');
  });

  it('carry no raw control character whatever a message or field holds', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const logger = createLogger('test', 'debug', 'json', sink);
    logger.warn({ room: 'a\u009b\u2028b' }, 'type m.\u001b[2Jx\nforged line');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(lines.length, 1, 'one line');
    const line = lines[0].trimEnd();
    assert.ok(!/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(line), line); // eslint-disable-line no-control-regex
    const parsed = JSON.parse(line) as { msg: string; room: string };
    assert.equal(parsed.msg, 'type m.\\x1b[2Jx\\x0aforged line');
    assert.equal(parsed.room, 'a\\x9b\\u2028b');
  });
});
