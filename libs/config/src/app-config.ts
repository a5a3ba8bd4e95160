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
  Validate,
  validateSync,
  ValidatorConstraint,
  ValidatorConstraintInterface,
} from 'class-validator';
import { isIP } from 'node:net';

const toFloat = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value.trim()) : value;
const toBool = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && /^(true|false)$/i.test(value.trim()) ? value.trim().toLowerCase() === 'true' : value;
const toLower = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' ? value.trim().toLowerCase() : value;
const toInt = ({ value }: { value: unknown }): unknown =>
  typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value;

/** Names Express' `trust proxy` knows for ranges of addresses. */
const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** A comma-separated list of addresses, CIDR subnets or range names, as Express' `trust proxy` takes it. */
@ValidatorConstraint({ name: 'trustedProxies' })
class TrustedProxies implements ValidatorConstraintInterface {
  validate(value: unknown): boolean {
    if (typeof value !== 'string') return false;
    return value.split(',').every((entry) => {
      const [address, prefix, ...rest] = entry.trim().split('/');
      if (PROXY_RANGE_NAMES.has(address) && prefix === undefined) return true;
      const family = isIP(address);
      if (family === 0 || rest.length > 0) return false;
      return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
    });
  }

  defaultMessage(): string {
    return 'comma-separated IP addresses, CIDR subnets, or loopback, linklocal, uniquelocal';
  }
}

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
  /** Heap a gateway spends remembering recent senders' scope hashes, in bytes (estimated; oldest forgotten first). */
  @Transform(toInt) @IsInt() @Min(65_536) @Max(4_294_967_296) SCOPE_CACHE_MAX_BYTES = 33_554_432;
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

  /**
   * whoami calls for one client address at once (an IPv6 client: its /64), so that one client sending unknown tokens
   * cannot hold every WHOAMI_MAX_CONCURRENT slot; its further new tokens get a retryable 503.
   */
  @Transform(toInt) @IsInt() @Min(1) @Max(10_000) WHOAMI_MAX_CONCURRENT_PER_CLIENT = 8;
  /**
   * Proxies whose X-Forwarded-For names the client (comma-separated addresses or CIDR subnets, or `loopback`,
   * `linklocal`, `uniquelocal`): only behind these is the client address taken from the header. Unset: the
   * connection's address, and the header is ignored.
   */
  @IsOptional()
  @Validate(TrustedProxies)
  TRUSTED_PROXIES?: string;

  /** Per-sender token bucket, per gateway instance: sustained sends a second (0 turns limiting off) and burst. */
  @Transform(toFloat) @IsNumber({}, { message: 'a number' }) @Min(0) RATE_LIMIT_PER_SECOND = 10;
  @Transform(toInt) @IsInt() @Min(1) @Max(1_000_000) RATE_LIMIT_BURST = 50;

  @IsString() @IsNotEmpty() HTTP_HOST = '0.0.0.0';
  @Transform(toInt) @IsInt() @Min(0) @Max(65535) GATEWAY_PORT = 8008;
  @Transform(toInt) @IsInt() @Min(0) @Max(65535) CONSUMER_PORT = 8009;
  /** `/metrics` of each app, on a listener of its own: never on the port a load balancer or the internet reaches. */
  @Transform(toInt) @IsInt() @Min(1) @Max(65535) GATEWAY_METRICS_PORT = 9008;
  @Transform(toInt) @IsInt() @Min(1) @Max(65535) CONSUMER_METRICS_PORT = 9009;
  /** The interface of the metrics listeners: loopback unless the operator opens it (a Prometheus on another host). */
  @IsString() @IsNotEmpty() METRICS_HOST = '127.0.0.1';
  /** Replaced by GATEWAY_METRICS_PORT and CONSUMER_METRICS_PORT; a start with it set says so and stops. */
  @IsOptional() @IsString() METRICS_PORT?: string;

  /**
   * The HTTP servers (gateway, consumer health, metrics). An idle keep-alive connection is kept this long: above the
   * idle timeout of the load balancer in front (60 s for most), or it reuses a connection being closed and answers 502.
   */
  @Transform(toInt) @IsInt() @Min(1000) @Max(3_600_000) HTTP_KEEP_ALIVE_TIMEOUT_MS = 75_000;
  /** Longest time from a request's first byte to the end of its headers; past it, 408 and the connection closes. */
  @Transform(toInt) @IsInt() @Min(1000) @Max(600_000) HTTP_HEADERS_TIMEOUT_MS = 10_000;
  /** Longest time from a request's first byte to the end of its body; past it, 408 (or a close) and no more waiting. */
  @Transform(toInt) @IsInt() @Min(1000) @Max(600_000) HTTP_REQUEST_TIMEOUT_MS = 30_000;
  /** Connections one server accepts at once, idle keep-alive ones included; more are closed at once. */
  @Transform(toInt) @IsInt() @Min(1) @Max(1_000_000) HTTP_MAX_CONNECTIONS = 10_000;

  /** How long a request waits for the consumer's reply before a retryable 503. */
  @Transform(toInt) @IsInt() @Min(100) @Max(600000) SEND_TIMEOUT_MS = 5000;
  /**
   * How often a gateway reads the consumers' committed offsets and the commands topic's end offsets, to refuse at
   * once (503 + Retry-After from the backlog) a send that would wait longer than SEND_TIMEOUT_MS; 0 turns it off.
   */
  @Transform(toInt) @IsInt() @Min(0) @Max(60_000) BACKPRESSURE_POLL_MS = 1000;
  /** The longest Retry-After a refusal for backlog asks for. */
  @Transform(toInt) @IsInt() @Min(1000) @Max(3_600_000) BACKPRESSURE_MAX_RETRY_AFTER_MS = 60_000;
  /**
   * A reply topic that no gateway has read for this long (its gateway crashed) is removed, with its reader group, by
   * the gateways still running; 0: never. Well above a gateway's start-up and any Kafka outage worth riding out.
   */
  @Transform(toInt) @IsInt() @Min(0) @Max(2_592_000_000) REPLY_TOPIC_ORPHAN_MS = 600_000;
  /** Requests a gateway instance holds at once; more are turned away with 503 + Retry-After. */
  @Transform(toInt) @IsInt() @Min(1) @Max(1000000) MAX_IN_FLIGHT = 10000;
  /**
   * Bytes of heap the requests a gateway holds may take at once, estimated per request from its parsed content and
   * raw size (a 64 KB body can take a megabyte parsed); more get 503 + Retry-After. At least 32 x MAX_BODY_BYTES, so
   * that a body of the costliest shape fits.
   */
  @Transform(toInt) @IsInt() @Min(1_048_576) @Max(68_719_476_736) MAX_IN_FLIGHT_BYTES = 268_435_456;
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
   * Remembered entries (transactions, held annotations) one consumer process keeps on disk, for all its partitions.
   * Past it, new transactions get a retryable 503 until old ones expire.
   */
  @Transform(toInt) @IsInt() @Min(1) @Max(1_000_000_000) STATE_MAX_ENTRIES = 1_000_000_000;
  /** Annotations one consumer holds (they never expire, until redacted): a bound apart from the transactions'. */
  @Transform(toInt) @IsInt() @Min(1) @Max(1_000_000_000) STATE_MAX_HELD_ANNOTATIONS = 50_000_000;
  /** Annotations one sender may hold in one partition of the annotation stage: the sender's fair share. */
  @Transform(toInt) @IsInt() @Min(1) @Max(1_000_000_000) STATE_MAX_HELD_ANNOTATIONS_PER_SENDER = 100_000;
  /** Where the consumer keeps its state stores (one SQLite database per stage and partition); each process its own. */
  @IsString()
  @Matches(/^\S(.*\S)?$/, { message: 'a directory, on one line, without spaces around it' })
  STATE_DIR = '.cache/state';
  /** Disk the state stores of one consumer process may take; past it, new transactions get a retryable 503. */
  @Transform(toInt) @IsInt() @Min(1_048_576) @Max(Number.MAX_SAFE_INTEGER) STATE_DISK_BUDGET_BYTES = 68_719_476_736;
  /** Memory the state stores of one consumer cache (SQLite page caches, off the V8 heap), split between its stores. */
  @Transform(toInt) @IsInt() @Min(1_048_576) @Max(68_719_476_736) STATE_CACHE_BYTES = 268_435_456;
  /** How long the state of a partition this consumer no longer owns stays on disk (to restore from if it returns). */
  @Transform(toInt) @IsInt() @Min(0) @Max(604_800_000) STATE_CLEANUP_DELAY_MS = 600_000;
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
  'TRUSTED_PROXIES',
  'MATRIX_TOKENS_FILE',
  'MATRIX_APPSERVICE_FILES',
  'MATRIX_HOMESERVER_URL',
  'METRICS_PORT',
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

const TOPIC_SETTINGS = [
  'KAFKA_TOPIC_COMMANDS',
  'KAFKA_TOPIC_TXNS',
  'KAFKA_TOPIC_EVENTS',
  'KAFKA_TOPIC_DEAD_LETTERS',
  'KAFKA_TOPIC_ANNOTATIONS',
  'KAFKA_TOPIC_ANNOTATION_STATE',
] as const;

/** Settings each valid alone, wrong together: each line names the variables. */
function settingsThatDoNotGoTogether(config: AppConfig): string[] {
  const lines: string[] = [];
  for (const name of ['KAFKA_SSL_CA_FILE', 'KAFKA_SSL_CERT_FILE', 'KAFKA_SSL_KEY_FILE'] as const) {
    if (config[name] !== undefined && !config.KAFKA_SSL) lines.push(`${name}: expected KAFKA_SSL=true with it`);
  }
  if ((config.KAFKA_SSL_CERT_FILE === undefined) !== (config.KAFKA_SSL_KEY_FILE === undefined)) {
    lines.push('KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE: expected both or neither');
  }
  if (config.METRICS_PORT !== undefined) {
    lines.push(
      'METRICS_PORT: replaced by GATEWAY_METRICS_PORT and CONSUMER_METRICS_PORT (metrics have a port of their own)',
    );
  }
  const covered = TOPIC_SETTINGS.filter((name) => config[name].startsWith(config.KAFKA_REPLY_TOPIC_PREFIX));
  if (covered.length > 0) {
    // The consumer replies to any topic under the prefix: it must hold the gateways' reply topics and nothing else.
    lines.push(`KAFKA_REPLY_TOPIC_PREFIX: expected a prefix of reply topics only, not of ${covered.join(', ')}`);
  }
  if (config.HTTP_HEADERS_TIMEOUT_MS > config.HTTP_REQUEST_TIMEOUT_MS) {
    lines.push(
      'HTTP_HEADERS_TIMEOUT_MS, HTTP_REQUEST_TIMEOUT_MS: expected the headers timeout at most the request timeout',
    );
  }
  if (config.MAX_IN_FLIGHT_BYTES < 32 * config.MAX_BODY_BYTES) {
    lines.push(
      `MAX_IN_FLIGHT_BYTES, MAX_BODY_BYTES: expected MAX_IN_FLIGHT_BYTES at least 32 x MAX_BODY_BYTES (${32 * config.MAX_BODY_BYTES}), the heap one body may take parsed`,
    );
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
