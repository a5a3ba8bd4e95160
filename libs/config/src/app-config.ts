import { plainToInstance, Transform } from 'class-transformer';
import {
  IsBoolean,
  IsIn,
  IsInt,
  IsNotEmpty,
  IsNumber,
  IsOptional,
  IsString,
  IsUrl,
  Matches,
  Max,
  Min,
  MinLength,
  validateSync,
} from 'class-validator';

const toFloat = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value.trim()) : value;
const toBool = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && /^(true|false)$/i.test(value.trim()) ? value.trim().toLowerCase() === 'true' : value;
const toLower = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' ? value.trim().toLowerCase() : value;
const toInt = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value;

/**
 * Every setting of both apps, read from the environment once at startup and validated here. Property names are
 * the environment variables; the README's configuration table lists the same names and defaults.
 */
export class AppConfig {
  @IsString()
  @Matches(/^[^,\s]+:\d+(,[^,\s]+:\d+)*$/, { message: 'a comma-separated list of host:port' })
  KAFKA_BROKERS = '127.0.0.1:9092';

  @IsString() @IsNotEmpty() KAFKA_CLIENT_ID = 'matrix-send';
  @IsString() @IsNotEmpty() KAFKA_TOPIC_COMMANDS = 'matrix.send.commands';
  @IsString() @IsNotEmpty() KAFKA_TOPIC_TXNS = 'matrix.send.txns';
  @IsString() @IsNotEmpty() KAFKA_TOPIC_EVENTS = 'matrix.room.events';
  @IsString() @IsNotEmpty() KAFKA_TOPIC_DEAD_LETTERS = 'matrix.send.dead-letters';
  @IsString() @IsNotEmpty() KAFKA_TOPIC_ANNOTATIONS = 'matrix.send.annotations';
  @IsString() @IsNotEmpty() KAFKA_TOPIC_ANNOTATION_STATE = 'matrix.send.annotations.state';
  @IsString() @IsNotEmpty() KAFKA_REPLY_TOPIC_PREFIX = 'matrix.send.replies.';
  @IsString() @IsNotEmpty() KAFKA_CONSUMER_GROUP = 'matrix-send-consumer';

  /**
   * Partitions of the commands topic (and of the txns changelog, the annotations topic and its changelog, which
   * must match): the consumer parallelism.
   */
  @Transform(toInt) @IsInt() @Min(1) @Max(10000) KAFKA_COMMAND_PARTITIONS = 8;
  @Transform(toInt) @IsInt() @Min(1) @Max(10000) KAFKA_EVENT_PARTITIONS = 8;
  /** Replication of the topics the apps create; min(3, brokers in the cluster) when unset. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) @Max(32767) KAFKA_REPLICATION_FACTOR?: number;
  /** How long the event log keeps events when the apps create it; -1 (the default): forever. */
  @Transform(toInt) @IsInt() @Min(-1) KAFKA_EVENTS_RETENTION_MS = -1;

  /** TLS to the brokers; the system's certificate authorities unless KAFKA_SSL_CA_FILE names a PEM bundle. */
  @Transform(toBool) @IsBoolean({ message: 'true or false' }) KAFKA_SSL = false;
  @IsOptional() @IsString() @IsNotEmpty() KAFKA_SSL_CA_FILE?: string;
  /** A client certificate and its key (PEM), for brokers that authenticate clients by TLS. */
  @IsOptional() @IsString() @IsNotEmpty() KAFKA_SSL_CERT_FILE?: string;
  @IsOptional() @IsString() @IsNotEmpty() KAFKA_SSL_KEY_FILE?: string;
  /** SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with a username and a password (or a file holding it). */
  @IsOptional()
  @Transform(toLower)
  @IsIn(['plain', 'scram-sha-256', 'scram-sha-512'], { message: 'PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512' })
  KAFKA_SASL_MECHANISM?: 'plain' | 'scram-sha-256' | 'scram-sha-512';
  @IsOptional() @IsString() @IsNotEmpty() KAFKA_SASL_USERNAME?: string;
  @IsOptional() @IsString() @IsNotEmpty() KAFKA_SASL_PASSWORD?: string;
  @IsOptional() @IsString() @IsNotEmpty() KAFKA_SASL_PASSWORD_FILE?: string;

  @IsString() @IsNotEmpty() MATRIX_SERVER_NAME = 'localhost';
  /**
   * The key of the hashes that stand for transaction scopes in Kafka (a scope can be derived from an access token).
   * Every gateway of a deployment needs the same one; without it (and without SCOPE_HASH_SECRET_FILE) a
   * development secret is generated into .cache/.
   */
  @IsOptional() @IsString() @MinLength(32, { message: 'at least 32 characters' }) SCOPE_HASH_SECRET?: string;
  @IsOptional() @IsString() @IsNotEmpty() SCOPE_HASH_SECRET_FILE?: string;
  @IsOptional() @IsString() @IsNotEmpty() MATRIX_TOKENS_FILE?: string;
  /** Comma-separated application service registration files (YAML). */
  @IsOptional() @IsString() @IsNotEmpty() MATRIX_APPSERVICE_FILES?: string;
  /** A homeserver that vouches for tokens no other source knows, through /account/whoami. */
  @IsOptional()
  @IsUrl({ require_tld: false, protocols: ['http', 'https'], require_protocol: true }, { message: 'an http(s) URL' })
  MATRIX_HOMESERVER_URL?: string;
  @Transform(toInt) @IsInt() @Min(0) @Max(86_400_000) WHOAMI_CACHE_TTL_MS = 300_000;
  @Transform(toInt) @IsInt() @Min(0) @Max(3_600_000) WHOAMI_NEGATIVE_CACHE_TTL_MS = 5_000;
  @Transform(toInt) @IsInt() @Min(100) @Max(60_000) WHOAMI_TIMEOUT_MS = 3_000;
  /** whoami calls a gateway makes at once; a new token beyond that gets a retryable 503. */
  @Transform(toInt) @IsInt() @Min(1) @Max(10_000) WHOAMI_MAX_CONCURRENT = 64;

  /** Per-sender token bucket, per gateway instance: sustained sends a second (0 turns limiting off) and burst. */
  @Transform(toFloat) @IsNumber({}, { message: 'a number' }) @Min(0) RATE_LIMIT_PER_SECOND = 10;
  @Transform(toInt) @IsInt() @Min(1) @Max(1_000_000) RATE_LIMIT_BURST = 50;

  @IsString() @IsNotEmpty() HTTP_HOST = '0.0.0.0';
  @Transform(toInt) @IsInt() @Min(0) @Max(65535) GATEWAY_PORT = 8008;
  @Transform(toInt) @IsInt() @Min(0) @Max(65535) CONSUMER_PORT = 8009;
  /** A listener of its own for `/metrics` (then not served on the app's port), e.g. on an internal interface. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) @Max(65535) METRICS_PORT?: number;
  /** The interface for METRICS_PORT; HTTP_HOST when unset. */
  @IsOptional() @IsString() @IsNotEmpty() METRICS_HOST?: string;

  /** How long a request waits for the consumer's reply before a retryable 503. */
  @Transform(toInt) @IsInt() @Min(100) @Max(600000) SEND_TIMEOUT_MS = 5000;
  /** Requests a gateway instance holds at once; more are turned away with 503 + Retry-After. */
  @Transform(toInt) @IsInt() @Min(1) @Max(1000000) MAX_IN_FLIGHT = 10000;
  /** Hard cap on the raw request body; the canonical event limit (65536 bytes) applies on top. */
  @Transform(toInt) @IsInt() @Min(1024) @Max(16777216) MAX_BODY_BYTES = 131072;

  /**
   * Produce requests gather sends (gateway commands, consumer replies): with none in flight, a send waits this long
   * for others; while one is in flight, sends gather until it completes.
   */
  @Transform(toInt) @IsInt() @Min(0) @Max(1000) PRODUCER_LINGER_MS = 1;
  @Transform(toInt) @IsInt() @Min(1) @Max(100000) PRODUCER_MAX_BATCH = 1000;
  /**
   * Bound on one produce request (and so on one partition's record batch), gateway and consumer alike: below the
   * broker's `message.max.bytes` (1 MiB by default) and every topic's `max.message.bytes`.
   */
  @Transform(toInt) @IsInt() @Min(65_536) @Max(104_857_600) KAFKA_MAX_REQUEST_BYTES = 900_000;

  /** How long transactions are remembered for deduplication (Synapse: 24 h). */
  @Transform(toInt) @IsInt() @Min(1000) TXN_WINDOW_MS = 86_400_000;
  /**
   * Remembered entries (transactions, held annotations) one consumer process keeps, for all its partitions: about
   * 200 bytes of heap each. Past it, new transactions get a retryable 503 until old ones expire.
   */
  @Transform(toInt) @IsInt() @Min(1) @Max(1_000_000_000) STATE_MAX_ENTRIES = 5_000_000;
  /** How long the group waits for a silent consumer before moving its partitions (broker bounds: 6 s to 5 min). */
  @Transform(toInt) @IsInt() @Min(6000) @Max(300000) CONSUMER_SESSION_TIMEOUT_MS = 10000;
  /**
   * A fetch waits for this many bytes of commands, or CONSUMER_FETCH_MAX_WAIT_MS: bigger batches mean fewer Kafka
   * transactions per send, for a little latency.
   */
  @Transform(toInt) @IsInt() @Min(1) @Max(52_428_800) CONSUMER_FETCH_MIN_BYTES = 1;
  @Transform(toInt) @IsInt() @Min(1) @Max(10_000) CONSUMER_FETCH_MAX_WAIT_MS = 500;
  /**
   * How long a consumer's Kafka transaction may stay open before the broker aborts it (transaction.timeout.ms): the
   * partitions of a consumer that died or froze mid-transaction stay blocked for their new owner this long, plus the
   * broker's scan interval (10 s). At most the broker's transaction.max.timeout.ms (15 min by default).
   */
  @Transform(toInt) @IsInt() @Min(1000) @Max(900_000) CONSUMER_TRANSACTION_TIMEOUT_MS = 10_000;
  /** Partitions one consumer process works on at the same time. */
  @Transform(toInt) @IsInt() @Min(1) @Max(1000) CONSUMER_PARTITIONS_CONCURRENTLY = 4;

  @IsIn(['fatal', 'error', 'warn', 'info', 'debug']) LOG_LEVEL = 'info';
  /** `json` (one JSON object per line) or `pretty` (for a terminal; npm start uses it). */
  @IsIn(['json', 'pretty']) LOG_FORMAT = 'json';
}

export class ConfigError extends Error {}

/** Settings without a default, which Object.keys(new AppConfig()) does not list. */
const OPTIONAL_SETTINGS = [
  'MATRIX_TOKENS_FILE',
  'MATRIX_APPSERVICE_FILES',
  'MATRIX_HOMESERVER_URL',
  'METRICS_PORT',
  'METRICS_HOST',
  'SCOPE_HASH_SECRET',
  'SCOPE_HASH_SECRET_FILE',
  'KAFKA_REPLICATION_FACTOR',
  'KAFKA_SSL_CA_FILE',
  'KAFKA_SSL_CERT_FILE',
  'KAFKA_SSL_KEY_FILE',
  'KAFKA_SASL_MECHANISM',
  'KAFKA_SASL_USERNAME',
  'KAFKA_SASL_PASSWORD',
  'KAFKA_SASL_PASSWORD_FILE',
];
/** Settings whose values never appear in an error or a log line. */
export const SECRET_SETTINGS = new Set(['SCOPE_HASH_SECRET', 'KAFKA_SASL_PASSWORD']);

/** Builds the config from an environment; throws one ConfigError naming each bad variable and what it expects. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const defaults = new AppConfig();
  const given: Record<string, unknown> = {};
  for (const key of Object.keys(defaults).concat(OPTIONAL_SETTINGS)) {
    const value = env[key];
    if (value !== undefined && value !== '') given[key] = value;
  }
  const config = plainToInstance(AppConfig, given, { exposeDefaultValues: true });
  const errors = validateSync(config, { forbidUnknownValues: true });
  const lines = errors.map((error) => {
    const expected = Object.values(error.constraints ?? {}).join('; ');
    const shown = SECRET_SETTINGS.has(error.property) ? '(hidden)' : JSON.stringify(given[error.property]);
    return `${error.property}=${shown}: expected ${expected}`;
  });
  if (lines.length === 0) lines.push(...settingsThatDoNotGoTogether(config));
  if (lines.length > 0) throw new ConfigError(`invalid configuration: ${lines.join(' | ')}`);
  return config;
}

/** Settings each valid alone, wrong together: each line names the variables. */
function settingsThatDoNotGoTogether(config: AppConfig): string[] {
  const lines: string[] = [];
  for (const name of ['KAFKA_SSL_CA_FILE', 'KAFKA_SSL_CERT_FILE', 'KAFKA_SSL_KEY_FILE'] as const) {
    if (config[name] !== undefined && !config.KAFKA_SSL) lines.push(`${name}: expected KAFKA_SSL=true with it`);
  }
  if ((config.KAFKA_SSL_CERT_FILE === undefined) !== (config.KAFKA_SSL_KEY_FILE === undefined)) {
    lines.push('KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE: expected both or neither');
  }
  if (config.KAFKA_SASL_MECHANISM !== undefined) {
    if (config.KAFKA_SASL_USERNAME === undefined) lines.push('KAFKA_SASL_USERNAME: expected with KAFKA_SASL_MECHANISM');
    if ((config.KAFKA_SASL_PASSWORD === undefined) === (config.KAFKA_SASL_PASSWORD_FILE === undefined)) {
      lines.push('KAFKA_SASL_PASSWORD, KAFKA_SASL_PASSWORD_FILE: expected one of them with KAFKA_SASL_MECHANISM');
    }
  } else {
    for (const name of ['KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD', 'KAFKA_SASL_PASSWORD_FILE'] as const) {
      if (config[name] !== undefined) lines.push(`${name}: expected KAFKA_SASL_MECHANISM with it`);
    }
  }
  return lines;
}
