import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MAX_JSON_DEPTH } from './canonical-json';
import { MatrixError, MAX_QUOTED_CHARS } from './errors';
import { deriveEventId } from './event-id';
import { parseEventContent, parseEventContentMeasured } from './event-content';

const parse = (text: string | Buffer) => parseEventContent(typeof text === 'string' ? Buffer.from(text) : text);

function errcodeOf(text: string | Buffer): string {
  try {
    parse(text);
    return 'accepted';
  } catch (error) {
    assert.ok(error instanceof MatrixError);
    assert.equal(error.status, 400);
    return error.errcode;
  }
}

describe('event content parsing (room v6+ canonical JSON rules)', () => {
  it('accepts an object with integers, strings, nesting and unicode', () => {
    assert.deepEqual(parse('{"a": [1, -2, {"b": null}], "c": "é\\u00e9", "d": true, "n": 9007199254740991}'), {
      a: [1, -2, { b: null }],
      c: 'éé',
      d: true,
      n: 9007199254740991,
    });
  });

  for (const [body, errcode] of [
    // Complement TestJson "Invalid numerical values"
    ['{"body": 9007199254740992}', 'M_BAD_JSON'],
    ['{"body": -9007199254740992}', 'M_BAD_JSON'],
    ['{"body": 1.1}', 'M_BAD_JSON'],
    ['{"body": 1e3}', 'M_BAD_JSON'],
    ['{"body": 1.0}', 'M_BAD_JSON'],
    // Complement TestJson "Invalid JSON special values"
    ['{"body": Infinity}', 'M_NOT_JSON'],
    ['{"body": -Infinity}', 'M_NOT_JSON'],
    ['{"body": NaN}', 'M_NOT_JSON'],
    // not an object
    ['[]', 'M_BAD_JSON'],
    ['"text"', 'M_BAD_JSON'],
    ['null', 'M_BAD_JSON'],
    ['42', 'M_BAD_JSON'],
    // not JSON
    ['', 'M_NOT_JSON'],
    ['{', 'M_NOT_JSON'],
    ["{'a': 1}", 'M_NOT_JSON'],
    ['{"a": 1,}', 'M_NOT_JSON'],
  ] as const) {
    it(`answers ${errcode} for ${body === '' ? 'an empty body' : body}`, () => {
      assert.equal(errcodeOf(body), errcode);
    });
  }

  it('does not mistake digits inside strings for numbers', () => {
    assert.deepEqual(parse('{"body": "1.5e10 and 9007199254740993", "k\\"1.5": 1}'), {
      body: '1.5e10 and 9007199254740993',
      'k"1.5': 1,
    });
  });

  it('answers M_BAD_JSON for a lone surrogate escape in a string or a key, and accepts a proper pair', () => {
    for (const body of [
      '{"msgtype":"m.text","body":"lone \\ud800 here"}',
      '{"body":"\\udfff"}',
      '{"body":"\\ude00\\ud83d"}', // a pair in the wrong order is two lone halves
      '{"lone \\ud800":"x"}',
      '{"a":[{"b":["\\ud83d"]}]}',
    ])
      assert.equal(errcodeOf(body), 'M_BAD_JSON', body);
    assert.deepEqual(parse('{"body":"\\ud83d\\ude00","\\ud83d\\ude00":"\\\\ud800"}'), {
      body: '😀',
      '😀': '\\ud800', // an escaped backslash, then text: no surrogate
    });
  });

  it('answers M_NOT_JSON for bytes that are not UTF-8', () => {
    assert.equal(errcodeOf(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])), 'M_NOT_JSON');
  });

  it('refuses absurd nesting with M_BAD_JSON instead of exhausting the stack', () => {
    assert.equal(errcodeOf(`{"a":${'['.repeat(10000)}${']'.repeat(10000)}}`), 'M_BAD_JSON');
  });

  it('accepts content up to MAX_JSON_DEPTH containers and gives it an event ID; one more is M_BAD_JSON', () => {
    // Objects, arrays and both mixed: the innermost value is a scalar, an empty object or an empty array.
    const shapes = {
      objects: (depth: number) => `${'{"a":'.repeat(depth - 1)}{"a":1}${'}'.repeat(depth - 1)}`,
      arrays: (depth: number) => `{"a":${'['.repeat(depth - 1)}1${']'.repeat(depth - 1)}}`,
      mixed: (depth: number) =>
        `${Array.from({ length: depth - 1 }, (_, i) => (i % 2 ? '[' : '{"a":')).join('')}[]${Array.from(
          { length: depth - 1 },
          (_, i) => (i % 2 ? ']' : '}'),
        )
          .reverse()
          .join('')}`,
    };
    for (const [name, shape] of Object.entries(shapes)) {
      for (let depth = MAX_JSON_DEPTH - 8; depth <= MAX_JSON_DEPTH + 7; depth++) {
        const text = shape(depth);
        if (depth > MAX_JSON_DEPTH) {
          assert.equal(errcodeOf(text), 'M_BAD_JSON', `${name} at depth ${depth}`);
          continue;
        }
        const content = parse(text);
        const fields = { room_id: '!r:x', sender: '@u:x', type: 'm.t', content, origin_server_ts: 1 };
        assert.doesNotThrow(
          () => deriveEventId({ topic: 't', partition: 0, offset: '0' }, fields),
          `${name} at depth ${depth}`,
        );
      }
    }
  });
  it('quotes at most MAX_QUOTED_CHARS of a bad number in the error, and logs none of it', () => {
    const digits = '9'.repeat(128 * 1024 - 20);
    for (const [body, value] of [
      [`{"n": ${digits}}`, digits],
      [`{"n": -${digits}}`, `-${digits}`],
      [`{"n": ${digits}.5}`, `${digits}.5`],
    ]) {
      assert.throws(
        () => parse(body),
        (error: unknown) => {
          assert.ok(error instanceof MatrixError);
          assert.equal(error.errcode, 'M_BAD_JSON');
          assert.ok(error.message.includes(value.slice(0, MAX_QUOTED_CHARS)), 'the client sees which value it was');
          assert.ok(error.message.length < 200, `an error of ${error.message.length} characters`);
          assert.ok(error.logText !== undefined && !/\d{5}/.test(error.logText), 'the log text quotes nothing');
          return true;
        },
      );
    }
  });
  it('estimates at least the heap that parsed content takes, within a few times of it, whatever its shape', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const n = 8000;
    const shapes: Record<string, string> = {
      'empty arrays': `{"a":[${Array(n).fill('[]').join(',')}]}`,
      'empty objects': `{"a":[${Array(n).fill('{}').join(',')}]}`,
      'arrays of one zero': `{"a":[${Array(n).fill('[0]').join(',')}]}`,
      'distinct keys': `{${Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(',')}}`,
      'distinct strings': `{"a":[${Array.from({ length: n }, (_, i) => `"${(i * 7919).toString(36)}é"`).join(',')}]}`,
      literals: `{"a":[${Array(n).fill('true,false,null').join(',')}]}`,
      'a long text': JSON.stringify({ body: 'x'.repeat(60_000) }),
    };
    // One call per shape: its content is garbage once the call returns, before the next shape is measured.
    const measure = (text: string) => {
      const body = Buffer.from(text);
      gc();
      const before = process.memoryUsage().heapUsed;
      const parsed = parseEventContentMeasured(body);
      gc();
      const held = process.memoryUsage().heapUsed - before;
      return { held, estimate: parsed.heapBytes, keys: Object.keys(parsed.content).length };
    };
    for (const [shape, text] of Object.entries(shapes)) {
      const { held, estimate, keys } = measure(text);
      assert.ok(held > 0 && keys > 0, `the premise: ${shape} holds heap`);
      assert.ok(estimate >= held, `${shape}: estimated ${estimate}, holds ${held}`);
      assert.ok(estimate <= 4 * held + 4096, `${shape}: estimated ${estimate}, holds only ${held}`);
    }
  });
});
