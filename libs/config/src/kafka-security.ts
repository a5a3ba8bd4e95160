import { readFileSync } from 'node:fs';
import { AppConfig, ConfigError } from './app-config';

/** TLS and SASL for every Kafka client, in the shapes kafkajs takes (`ssl`, `sasl`); both absent: plaintext. */
export interface KafkaSecurity {
  ssl?: true | { ca?: string[]; cert?: string; key?: string };
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
}

/** How the apps and tools reach Kafka: the brokers, TLS and SASL (files read now). */
export function kafkaConnection(config: AppConfig): KafkaSecurity & { brokers: string[] } {
  return { brokers: config.KAFKA_BROKERS.split(','), ...loadKafkaSecurity(config) };
}

/** Where the password and the TLS material came from, for one start-up line: never a value. */
export function describeKafkaSecurity(config: AppConfig): string {
  const tls = config.KAFKA_SSL
    ? `TLS${config.KAFKA_SSL_CA_FILE ? ' (CA from KAFKA_SSL_CA_FILE)' : ''}${config.KAFKA_SSL_CERT_FILE ? ' with a client certificate' : ''}`
    : 'no TLS';
  const sasl = config.KAFKA_SASL_MECHANISM
    ? `SASL ${config.KAFKA_SASL_MECHANISM.toUpperCase()} as ${config.KAFKA_SASL_USERNAME}`
    : 'no SASL';
  return `${tls}, ${sasl}`;
}

/**
 * Reads the files the Kafka security settings name. loadConfig has checked that the settings go together; a file
 * that cannot be read is a configuration error naming the variable, so a process stops at start, not at its first
 * connection.
 */
export function loadKafkaSecurity(config: AppConfig): KafkaSecurity {
  const security: KafkaSecurity = {};
  if (config.KAFKA_SSL) {
    const ca = config.KAFKA_SSL_CA_FILE;
    const cert = config.KAFKA_SSL_CERT_FILE;
    const key = config.KAFKA_SSL_KEY_FILE;
    security.ssl =
      ca || cert
        ? {
            ...(ca ? { ca: [readSetting('KAFKA_SSL_CA_FILE', ca)] } : {}),
            ...(cert && key
              ? { cert: readSetting('KAFKA_SSL_CERT_FILE', cert), key: readSetting('KAFKA_SSL_KEY_FILE', key) }
              : {}),
          }
        : true; // the system's certificate authorities, as a managed service with a public certificate needs
  }
  if (config.KAFKA_SASL_MECHANISM) {
    const password =
      config.KAFKA_SASL_PASSWORD ??
      readSetting('KAFKA_SASL_PASSWORD_FILE', config.KAFKA_SASL_PASSWORD_FILE!).replace(/\r?\n$/, '');
    if (password === '') throw new ConfigError('invalid configuration: KAFKA_SASL_PASSWORD_FILE: the file is empty');
    security.sasl = { mechanism: config.KAFKA_SASL_MECHANISM, username: config.KAFKA_SASL_USERNAME!, password };
  }
  return security;
}

function readSetting(name: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `invalid configuration: ${name}=${JSON.stringify(path)}: cannot be read (${(error as NodeJS.ErrnoException).code})`,
    );
  }
}
