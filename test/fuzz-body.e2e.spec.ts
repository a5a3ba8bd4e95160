import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FakeHomeserver } from './support/fake-homeserver';
import { prng } from './support/prng';
import { Pipeline, startPipeline, TEST_USERS } from './support/pipeline';

const SEED = Number(process.env.FUZZ_SEED ?? 20261126);
const REQUESTS = Number(process.env.FUZZ_BODY_REQUESTS ?? 1500);
/** The spec's limits, restated here so that this test is a reference independent of libs/matrix. */
const MAX_DEPTH = 128;
const MAX_EVENT_BYTES = 65536;
const MAX_SAFE = 2 ** 53 - 1;
const ROOM = '!fuzz-body:test.local';
/**
 * A type with no content rule of its own (m.room.message needs string `body` and `msgtype`): this fuzzer judges the
 * JSON rules every event meets; the rules of particular types have their conformance tests.
 */
const TYPE = 'org.example.fuzz';

/** A body and the answer the spec asks for: 200, or the status and errcode of the first rule it breaks. */
interface Case {
  kind: string;
  text: string;
  /** Nesting of containers, content object included. */
  depth: number;
  /** A float, an exponent or an integer outside ±(2^53−1) somewhere in it. */
  badNumber: boolean;
  /** A string or key holding half of a surrogate pair alone (`"\ud800"`): no Unicode, so no UTF-8 form. */
  loneSurrogate?: boolean;
}

/** True when a JSON string literal decodes to text that UTF-8 cannot carry (a lone surrogate does not survive). */
const hasLoneSurrogate = (literal: string): boolean => {
  const decoded = JSON.parse(literal) as string;
  return Buffer.from(decoded, 'utf8').toString('utf8') !== decoded;
};

interface Credential {
  name: string;
  sender: string;
  headers: Record<string, string>;
  query: string;
}

/**
 * Bodies built as text, so that the generator knows what it put in: depth, numbers, lone surrogates, duplicate
 * keys, sizes. Every body is well-formed JSON; the reference decides from what the generator recorded.
 */
function generator(random: () => number) {
  const int = (max: number): number => Math.floor(random() * max);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const goodNumbers = ['0', '-1', '42', String(MAX_SAFE), String(-MAX_SAFE), '1000000'];
  const badNumbers = [
    '1.5',
    '-0.0',
    '1e3',
    '1E-2',
    '2.5e+10',
    String(MAX_SAFE + 1),
    String(-MAX_SAFE - 1),
    '123456789012345678901234567890',
  ];
  const stringPieces = [
    'a',
    'é',
    '日本',
    '😀',
    '\\ud83d\\ude00',
    '\\u0000',
    '\\"',
    '\\\\',
    '\\n',
    ' ',
    '{',
    ']',
    '1.5',
    'e9',
  ];
  type State = { depth: number; badNumber: boolean; loneSurrogate: boolean };
  // Halves of surrogate pairs, rare (a body holds dozens of string pieces). Two in a row may make a pair:
  // hasLoneSurrogate judges the whole literal.
  const surrogateHalves = ['\\ud800', '\\udfff', '\\udbff', '\\udc00'];
  const piece = (): string => (random() < 0.004 ? pick(surrogateHalves) : pick(stringPieces));
  const string = (state: State, pieces = int(6)): string => {
    const literal = `"${Array.from({ length: pieces }, piece).join('')}"`;
    if (hasLoneSurrogate(literal)) state.loneSurrogate = true;
    return literal;
  };
  const key = (state: State, keys: readonly string[]): string => {
    const literal = `"${random() < 0.02 ? `k${pick(surrogateHalves)}` : pick(keys)}"`;
    if (hasLoneSurrogate(literal)) state.loneSurrogate = true;
    return literal;
  };

  function value(depthLeft: number, state: State, level: number): string {
    const roll = random();
    if (depthLeft <= 0 || roll < 0.45) {
      const scalar = random();
      if (scalar < 0.35) return string(state);
      if (scalar < 0.7) {
        if (random() < 0.04) {
          state.badNumber = true;
          return pick(badNumbers);
        }
        return pick(goodNumbers);
      }
      return pick(['true', 'false', 'null']);
    }
    state.depth = Math.max(state.depth, level + 1);
    const size = 1 + int(4);
    if (roll < 0.75) {
      const keys = Array.from({ length: size }, () =>
        key(state, ['a', 'body', 'k', '\\u00e9', 'msgtype', 'a', '\\ud83d\\ude00']),
      );
      return `{${keys.map((k) => `${k}:${value(depthLeft - 1, state, level + 1)}`).join(',')}}`;
    }
    return `[${Array.from({ length: size }, () => value(depthLeft - 1, state, level + 1)).join(',')}]`;
  }

  const nested = (shape: 'objects' | 'arrays' | 'mixed', depth: number): string => {
    if (shape === 'objects') return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
    if (shape === 'arrays') {
      // The innermost container may be empty: `[]` is a level of its own.
      const empty = random() < 0.3;
      const levels = empty ? depth - 2 : depth - 1;
      return `{"a":${'['.repeat(levels)}${empty ? '[]' : pick(['1', '"s"'])}${']'.repeat(levels)}}`;
    }
    const opens = Array.from({ length: depth - 1 }, (_, i) => (i % 2 ? '{"a":' : '['));
    const closes = opens.map((open) => (open === '[' ? ']' : '}')).reverse();
    return `{"a":${opens.join('')}${pick(['1', 'null'])}${closes.join('')}}`;
  };

  return {
    /** Every depth from 120 to 135 of each shape. */
    depthSweep(): Case[] {
      return (['objects', 'arrays', 'mixed'] as const).flatMap((shape) =>
        Array.from({ length: 16 }, (_, i) => ({
          kind: `depth-${shape}`,
          text: nested(shape, 120 + i),
          depth: 120 + i,
          badNumber: false,
        })),
      );
    },
    /** The number boundaries, each alone in a body. */
    numberSweep(): Case[] {
      return [...goodNumbers, ...badNumbers].map((n) => ({
        kind: 'number',
        text: `{"n":${n},"list":[${n}]}`,
        depth: 2,
        badNumber: badNumbers.includes(n),
      }));
    },
    /** Lone halves and pairs, escaped and raw, in a string and in a key. */
    surrogateSweep(): Case[] {
      const literals = ['\\ud800', '\\udfff', 'a\\ud83d', '\\ude00\\ud83d', '\\ud83d\\ude00', '😀', '\\ud83d\\u0041'];
      return literals.flatMap((literal) =>
        [`{"k":"${literal}"}`, `{"${literal}":1}`].map((text) => ({
          kind: 'surrogate',
          text,
          depth: 1,
          badNumber: false,
          loneSurrogate: hasLoneSurrogate(`"${literal}"`),
        })),
      );
    },
    random(): Case {
      const state: State = { depth: 1, badNumber: false, loneSurrogate: false };
      const deep = random() < 0.1;
      if (deep) {
        const depth = 118 + int(20);
        return {
          kind: 'deep',
          text: nested(pick(['objects', 'arrays', 'mixed'] as const), depth),
          depth,
          badNumber: false,
        };
      }
      const members = Array.from(
        { length: 1 + int(5) },
        () => `${key(state, ['body', 'msgtype', 'k', 'x', 'body'])}:${value(5, state, 1)}`,
      );
      return { kind: 'random', text: `{${members.join(',')}}`, ...state };
    },
  };
}

/** Canonical JSON of an event whose strings and keys are ASCII: JSON.stringify with keys in order. */
function asciiEventBytes(sender: string, content: Record<string, string>): number {
  const event = {
    content: Object.fromEntries(Object.entries(content).sort(([a], [b]) => (a < b ? -1 : 1))),
    event_id: `$${'x'.repeat(43)}`,
    origin_server_ts: Date.now(),
    room_id: ROOM,
    sender,
    type: TYPE,
  };
  return Buffer.byteLength(JSON.stringify(event));
}

function expected(c: Case, eventBytes?: number): string {
  if (c.depth > MAX_DEPTH || c.badNumber || c.loneSurrogate) return '400 M_BAD_JSON';
  if (eventBytes !== undefined && eventBytes > MAX_EVENT_BYTES) return '413 M_TOO_LARGE';
  return '200';
}

describe('fuzzing event bodies on the accepted path', () => {
  let pipeline: Pipeline;
  let homeserver: FakeHomeserver;
  const credentials: Credential[] = [];

  before(async () => {
    homeserver = new FakeHomeserver({
      'fuzz-hs-token': { status: 200, body: { user_id: '@delegated:test.local', device_id: 'FUZZDEV' } },
    });
    const registration = join(tmpdir(), `fuzz-as-${randomUUID()}.yaml`);
    writeFileSync(
      registration,
      `id: fuzzbridge\nas_token: fuzz-as-token\nhs_token: x\nsender_localpart: fuzzbot\nnamespaces:\n  users:\n    - exclusive: true\n      regex: '@fuzz_.*:test\\.local'\n`,
    );
    pipeline = await startPipeline({
      MATRIX_APPSERVICE_FILES: registration,
      MATRIX_HOMESERVER_URL: await homeserver.start(),
      MAX_BODY_BYTES: '200000',
    });
    credentials.push(
      {
        name: 'static',
        sender: TEST_USERS.alice.user_id,
        headers: { authorization: `Bearer ${TEST_USERS.alice.token}` },
        query: '',
      },
      {
        name: 'appservice',
        sender: '@fuzz_user:test.local',
        headers: { authorization: 'Bearer fuzz-as-token' },
        query: '?user_id=%40fuzz_user%3Atest.local',
      },
      {
        name: 'delegated',
        sender: '@delegated:test.local',
        headers: { authorization: 'Bearer fuzz-hs-token' },
        query: '',
      },
    );
  });
  after(async () => {
    await pipeline?.stop();
    await homeserver?.stop();
  });

  it(`answers every body as the spec says, with valid credentials and path (seed ${SEED}, FUZZ_SEED to replay)`, async () => {
    const random = prng(SEED);
    const generate = generator(random);
    const requests: { credential: Credential; c: Case; expect: string }[] = [];
    for (const credential of credentials) {
      for (const c of [...generate.depthSweep(), ...generate.numberSweep(), ...generate.surrogateSweep()])
        requests.push({ credential, c, expect: expected(c) });
      // Sizes at the limit, one byte under and one over, as the whole event's canonical JSON.
      const base = asciiEventBytes(credential.sender, { body: '' });
      for (const delta of [-1, 0, 1]) {
        const body = 'x'.repeat(MAX_EVENT_BYTES - base + delta);
        const c: Case = {
          kind: `size${delta >= 0 ? '+' : ''}${delta}`,
          text: JSON.stringify({ body }),
          depth: 1,
          badNumber: false,
        };
        requests.push({ credential, c, expect: expected(c, asciiEventBytes(credential.sender, { body })) });
      }
    }
    while (requests.length < REQUESTS) {
      const c = generate.random();
      requests.push({ credential: credentials[Math.floor(random() * credentials.length)], c, expect: expected(c) });
    }

    const wrong: string[] = [];
    const byOutcome = new Map<string, number>();
    let fiveHundreds = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < requests.length) {
        const { credential, c, expect } = requests[next++];
        const path = `/_matrix/client/v3/rooms/${encodeURIComponent(ROOM)}/send/${TYPE}/fuzz-${randomUUID()}${credential.query}`;
        const res = await fetch(`${pipeline.gateway.url}${path}`, {
          method: 'PUT',
          headers: credential.headers,
          body: c.text,
        });
        const body = (await res.json().catch(() => ({}))) as { errcode?: string; event_id?: string };
        const got = res.status === 200 && typeof body.event_id === 'string' ? '200' : `${res.status} ${body.errcode}`;
        if (res.status >= 500) fiveHundreds++;
        byOutcome.set(got, (byOutcome.get(got) ?? 0) + 1);
        if (got !== expect)
          wrong.push(
            `${credential.name} ${c.kind} (depth ${c.depth}, ${c.text.length} chars): ${got}, expected ${expect}: ${c.text.slice(0, 80)}`,
          );
      }
    };
    await Promise.all(Array.from({ length: 8 }, () => worker()));

    const accepted = byOutcome.get('200') ?? 0;
    const lone = requests.filter(({ c }) => c.loneSurrogate).length;
    const rejected = [...byOutcome].filter(([outcome]) => outcome !== '200');
    const byErrcode = rejected.map(([outcome, n]) => `${outcome.split(' ')[1]}: ${n}`).join(', ');
    process.stdout.write(
      `fuzz: ${requests.length} requests, ${accepted} accepted, ${requests.length - accepted} rejected (${byErrcode}; ${lone} with a lone surrogate), ${fiveHundreds} 5xx\n`,
    );
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} answers differ from the reference`);
    assert.equal(fiveHundreds, 0);
    assert.ok(lone > requests.length * 0.01, 'lone surrogates were tried');
    assert.ok(accepted >= requests.length * 0.3, 'a real share of the bodies reached the event log');
  });
});
