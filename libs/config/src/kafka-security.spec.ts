import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from './app-config';
import { describeKafkaSecurity, loadKafkaSecurity } from './kafka-security';

const dir = mkdtempSync(join(tmpdir(), 'kafka-security-'));
const file = (name: string, text: string): string => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};
const refusal = (env: NodeJS.ProcessEnv): string => {
  try {
    loadKafkaSecurity(loadConfig(env));
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail('the configuration was accepted');
};

describe('Kafka TLS and SASL settings', () => {
  it('connects in plaintext without any of them', () => {
    assert.deepEqual(loadKafkaSecurity(loadConfig({})), {});
  });

  it('uses the system certificate authorities with KAFKA_SSL=true alone, and the given CA, certificate and key otherwise', () => {
    assert.deepEqual(loadKafkaSecurity(loadConfig({ KAFKA_SSL: 'true' })), { ssl: true });
    const env = {
      KAFKA_SSL: 'TRUE',
      KAFKA_SSL_CA_FILE: file('ca.pem', 'CA'),
      KAFKA_SSL_CERT_FILE: file('client.pem', 'CERT'),
      KAFKA_SSL_KEY_FILE: file('client.key', 'KEY'),
    };
    assert.deepEqual(loadKafkaSecurity(loadConfig(env)), { ssl: { ca: ['CA'], cert: 'CERT', key: 'KEY' } });
  });

  it('takes each SASL mechanism by its usual name, and the password from a file without its final newline', () => {
    for (const [given, mechanism] of [
      ['PLAIN', 'plain'],
      ['SCRAM-SHA-256', 'scram-sha-256'],
      ['scram-sha-512', 'scram-sha-512'],
    ]) {
      const config = loadConfig({
        KAFKA_SASL_MECHANISM: given,
        KAFKA_SASL_USERNAME: 'bridge',
        KAFKA_SASL_PASSWORD_FILE: file('password', 's3cret\n'),
      });
      assert.deepEqual(loadKafkaSecurity(config).sasl, { mechanism, username: 'bridge', password: 's3cret' });
    }
  });

  it('refuses settings that do not go together, naming them', () => {
    assert.match(refusal({ KAFKA_SSL_CA_FILE: '/ca.pem' }), /KAFKA_SSL_CA_FILE: expected KAFKA_SSL=true/);
    assert.match(
      refusal({ KAFKA_SSL: 'true', KAFKA_SSL_CERT_FILE: '/c.pem' }),
      /KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE: expected both or neither/,
    );
    assert.match(
      refusal({ KAFKA_SASL_MECHANISM: 'PLAIN', KAFKA_SASL_PASSWORD: 'x' }),
      /KAFKA_SASL_USERNAME: expected with KAFKA_SASL_MECHANISM/,
    );
    assert.match(refusal({ KAFKA_SASL_MECHANISM: 'PLAIN', KAFKA_SASL_USERNAME: 'u' }), /expected one of them/);
    assert.match(
      refusal({ KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'x' }),
      /KAFKA_SASL_USERNAME: expected KAFKA_SASL_MECHANISM/,
    );
    assert.match(
      refusal({ KAFKA_SASL_MECHANISM: 'GSSAPI', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'x' }),
      /KAFKA_SASL_MECHANISM="GSSAPI": expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512/,
    );
    assert.match(refusal({ KAFKA_SSL: 'yes' }), /KAFKA_SSL="yes": expected true or false/);
  });

  it('names an unreadable file, and never shows a password', () => {
    assert.match(
      refusal({ KAFKA_SSL: 'true', KAFKA_SSL_CA_FILE: join(dir, 'missing.pem') }),
      /KAFKA_SSL_CA_FILE=".*missing.pem": cannot be read \(ENOENT\)/,
    );
    const shown = refusal({ KAFKA_SASL_PASSWORD: 'hunter2-password' });
    assert.doesNotMatch(shown, /hunter2/);
    const config = loadConfig({
      KAFKA_SSL: 'true',
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      KAFKA_SASL_USERNAME: 'bridge',
      KAFKA_SASL_PASSWORD: 'hunter2-password',
    });
    assert.equal(describeKafkaSecurity(config), 'TLS, SASL SCRAM-SHA-512 as bridge');
  });
});
