import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isolatedEnv, runToExit } from './support/pipeline';

/** A file in a fresh directory, as an operator writes it. */
function file(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'refusals-')), name);
  writeFileSync(path, text);
  return path;
}

/** The gateway's refusal: exit 1 and one plain line (no stack, no colours), which the test returns. */
async function refusal(env: Record<string, string>): Promise<string> {
  const result = await runToExit('gateway', isolatedEnv({ LOG_FORMAT: 'json', ...env }));
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
  assert.ok(!result.stderr.includes('\u001b['), 'no ANSI colours');
  return result.stderr;
}

describe('gateway start-up refusals', () => {
  it('refuses a malformed MATRIX_TOKENS_FILE in one line naming the file, line and column, never its tokens', async () => {
    const token = 'secret-token-never-printed';
    const path = file('tokens.yaml', `- token: ${token}\n  user_id: "@a:x\n   device_id: [\n`);
    const line = await refusal({ MATRIX_TOKENS_FILE: path });
    assert.ok(line.startsWith(`gateway: MATRIX_TOKENS_FILE ${path}: not valid YAML at line `), line);
    assert.match(line, /line \d+, column \d+/);
    assert.ok(!line.includes(token) && !line.includes('secret'), line);
  });

  it('refuses a malformed registration in one line naming the file, line and column, never its as_token', async () => {
    const token = 'as-token-never-printed';
    const path = file('bridge.yaml', `id: bridge\nas_token: ${token}\nnamespaces: {users: [\n  - regex: "@b_.*\n`);
    const line = await refusal({ MATRIX_APPSERVICE_FILES: path });
    assert.ok(line.startsWith(`gateway: MATRIX_APPSERVICE_FILES ${path}: not valid YAML at line `), line);
    assert.ok(!line.includes(token) && !line.includes('never-printed'), line);
  });

  it('refuses a namespace RE2 cannot run in one line', async () => {
    const path = file(
      'backref.yaml',
      'id: backref\nas_token: as-token-backref-xx\nsender_localpart: bot\nnamespaces: {users: [{regex: "@(a)\\\\1:x"}]}\n',
    );
    const line = await refusal({ MATRIX_APPSERVICE_FILES: path });
    assert.match(line, /namespaces\.users\[0\]\.regex .*@\(a\).* is not a regular expression RE2 accepts/);
    assert.ok(!line.includes('as-token-backref'), line);
  });
});
