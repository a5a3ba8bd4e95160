/**
 * `npm run bench [-- --quick]`: how many sends a second, at what latency, against the HTTP ceiling of the same
 * machine. Starts what it needs (a local broker unless KAFKA_BROKERS is set), runs every scenario, stops
 * everything, and writes bench/results/latest.json, a dated copy, summary.md and chart.svg.
 */
/* eslint-disable no-console -- a terminal program */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { Broker, provideBroker, startPrivateBroker } from '../tools/harness/broker';
import { AppProcess, isolatedTopics } from '../tools/harness/app-process';
import { renderChart, renderSummary, ScenarioResult } from './report';
import { breakdown, CostBreakdown, jitSecondsOf, MeasuredProcess, snapshot } from './cost';
import { LoadResult, sendLoad } from './load';

const quick = process.argv.includes('--quick');
const MEASURE_S = quick ? 8 : 30;
const WARMUP_S = quick ? 3 : 5;
/**
 * Connections of the saturation scenarios, the ceiling's included. Enough to saturate the pipeline: a closed loop
 * of N connections makes at most N / latency sends a second (Little's law), and a send through Kafka takes ten
 * times as long as the ceiling's answer, so 64 connections held the pipeline at about 64 / 45 ms whatever it
 * cost. On 2 cores 128 saturate it (256 made no more, 512 less, at twice and four times the latency).
 */
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 128);
/**
 * A broker just started spends up to a core compiling (its JIT) through its first minutes of load: the bench loads
 * it, unmeasured, in slices of this many seconds until its compiler threads use under JIT_QUIET of a core (or for
 * WARMUP_SLICES_MAX slices; always at least WARMUP_SLICES_MIN, and only those when it cannot see the broker). Three
 * brokers compile the same code three times on the same cores, and get three times as many slices (a first quick run
 * ended 60 s of cluster warm-up with the compilers still at 3.46 of the brokers' 6.50 CPU-ms per send).
 */
const WARMUP_SLICE_S = 5;
const WARMUP_SLICES_MIN = 3;
const WARMUP_SLICES_MAX = quick ? 12 : 24;
const JIT_QUIET = 0.05;
const USERS = 100;
const root = join(__dirname, '../..');

/**
 * The settings of the tuned pipeline scenarios: for one broker on 2 cores every partition a batch touches costs a
 * transaction marker, so fewer partitions and fuller fetches mean fewer, larger transactions (README, Performance).
 * The `defaults` scenario runs without them.
 */
const TUNING = {
  KAFKA_COMMAND_PARTITIONS: process.env.BENCH_PARTITIONS ?? '2',
  KAFKA_EVENT_PARTITIONS: process.env.BENCH_PARTITIONS ?? '2',
  CONSUMER_FETCH_MIN_BYTES: '32768',
  CONSUMER_FETCH_MAX_WAIT_MS: '10',
};

function benchEnv(): Record<string, string> {
  const tokensFile = join(root, '.cache', 'bench-tokens.json');
  mkdirSync(join(root, '.cache'), { recursive: true });
  writeFileSync(
    tokensFile,
    JSON.stringify(
      Array.from({ length: USERS }, (_, i) => ({
        token: `bench-token-${i}-xxxxxxxx`,
        user_id: `@bench${i}:bench.local`,
        device_id: `D${i}`,
      })),
    ),
  );
  return {
    ...isolatedTopics(),
    MATRIX_SERVER_NAME: 'test.local',
    SCOPE_HASH_SECRET: 'bench-scope-hash-secret-0123456789abcdef',
    HTTP_HOST: '127.0.0.1',
    MATRIX_TOKENS_FILE: tokensFile,
    // The benchmark measures the pipeline, not the limiter, and logs nothing per request.
    RATE_LIMIT_PER_SECOND: '0',
    LOG_LEVEL: 'warn',
  };
}
const tokens = Array.from({ length: USERS }, (_, i) => `bench-token-${i}-xxxxxxxx`);

/** Warms up, then measures; the cost breakdown covers the measured part only. */
async function measure(
  urls: string[],
  options: { retryShare?: number; overallRate?: number; connections?: number },
  processes: MeasuredProcess[],
): Promise<{ result: LoadResult; cost: CostBreakdown | null }> {
  const perTarget = (rate?: number) => (rate ? Math.round(rate / urls.length) : undefined);
  const connections = Math.max(1, Math.round(connectionsOf(options) / urls.length));
  // Warm up (JIT, connections, Kafka metadata), then measure.
  await Promise.all(
    urls.map((url) =>
      sendLoad({ url, tokens, connections, durationSeconds: WARMUP_S, overallRate: perTarget(options.overallRate) }),
    ),
  );
  const before = processes.length > 0 ? await snapshot(processes) : null;
  const started = Date.now();
  const results = await Promise.all(
    urls.map((url) =>
      sendLoad({
        url,
        tokens,
        connections,
        durationSeconds: MEASURE_S,
        retryShare: options.retryShare,
        overallRate: perTarget(options.overallRate),
      }),
    ),
  );
  const result = combine(results);
  const cost = before
    ? breakdown(before, await snapshot(processes), result.requests, (Date.now() - started) / 1000)
    : null;
  return { result, cost };
}

/** The concurrent clients of a scenario: its own number, 50 at a fixed rate, or enough to saturate. */
function connectionsOf(options: { overallRate?: number; connections?: number }): number {
  return options.connections ?? (options.overallRate ? 50 : CONNECTIONS);
}

/** Sums counts over load generators; for latency, the worst generator's percentile (conservative). */
function combine(results: LoadResult[]): LoadResult {
  const sum = (key: keyof LoadResult) => results.reduce((total, r) => total + r[key], 0);
  const worst = (key: keyof LoadResult) => Math.max(...results.map((r) => r[key]));
  return {
    requests: sum('requests'),
    rps: sum('rps'),
    p50_ms: worst('p50_ms'),
    p90_ms: worst('p90_ms'),
    p99_ms: worst('p99_ms'),
    max_ms: worst('max_ms'),
    non2xx: sum('non2xx'),
    bad_answers: sum('bad_answers'),
    retries: sum('retries'),
    retry_mismatches: sum('retry_mismatches'),
    errors: sum('errors'),
    timeouts: sum('timeouts'),
  };
}

/** Starts `instances` consumers and gateways (consumers first, all ready), runs `use`, and stops them all. */
async function withPipeline<T>(
  env: Record<string, string>,
  instances: number,
  use: (gateways: AppProcess[], consumers: AppProcess[]) => Promise<T>,
): Promise<T> {
  const consumers: AppProcess[] = [];
  const gateways: AppProcess[] = [];
  try {
    for (let i = 0; i < instances; i++) consumers.push(await AppProcess.start('consumer', env));
    for (let i = 0; i < instances; i++) gateways.push(await AppProcess.start('gateway', env));
    await Promise.all(consumers.map((c) => c.waitReady())); // the second consumer's join moves partitions
    return await use(gateways, consumers);
  } finally {
    await Promise.all([...gateways, ...consumers].map((app) => app.stop().catch(() => app.kill())));
  }
}

async function pipelineScenario(
  name: string,
  instances: number,
  options: { retryShare?: number; overallRate?: number; untuned?: boolean; connections?: number },
  broker: Broker,
): Promise<ScenarioResult> {
  const env = { ...benchEnv(), ...(options.untuned ? {} : TUNING), KAFKA_BROKERS: broker.brokers };
  return withPipeline(env, instances, async (gateways, consumers) => {
    console.log(`  ${name}: ${instances} gateway(s) + ${instances} consumer(s) ready; measuring ${MEASURE_S}s`);
    const processes: MeasuredProcess[] = [
      // A broker not on this machine (or not known) is still a row of the breakdown, its CPU unknown.
      ...(broker.pids.length > 0 ? broker.pids : [null]).map((pid): MeasuredProcess => ({ role: 'broker', pid })),
      ...gateways.map((g): MeasuredProcess => ({ role: 'gateway', pid: g.pid, metricsUrl: g.metricsUrl })),
      ...consumers.map((c): MeasuredProcess => ({ role: 'consumer', pid: c.pid, metricsUrl: c.metricsUrl })),
      { role: 'load', pid: process.pid },
    ];
    const { result, cost } = await measure(
      gateways.map((g) => g.url),
      options,
      processes,
    );
    return {
      ...result,
      cost,
      gateway_rss_mb: Math.max(...gateways.map((g) => g.peakRssMb())),
      consumer_rss_mb: Math.max(...consumers.map((c) => c.peakRssMb())),
      connections: connectionsOf(options),
      note:
        (options.overallRate ? `fixed ${options.overallRate} sends/s` : `${connectionsOf(options)} connections`) +
        (options.untuned ? ', default settings' : '') +
        (broker.source === 'cluster' ? ', three brokers (replication 3, min.insync.replicas=2)' : ''),
    };
  });
}

/** Load through a pipeline of its own, measured by nobody, until the broker's hot paths are compiled. */
async function warmUpBroker(broker: Broker, maxSlices = WARMUP_SLICES_MAX): Promise<void> {
  const env = { ...benchEnv(), ...TUNING, KAFKA_BROKERS: broker.brokers };
  await withPipeline(env, 1, async ([gateway]) => {
    let jit = jitSecondsOf(broker.pids);
    let slices = 0;
    let quiet = false;
    while (slices < maxSlices && !(quiet && slices >= WARMUP_SLICES_MIN)) {
      await sendLoad({ url: gateway.url, tokens, connections: CONNECTIONS, durationSeconds: WARMUP_SLICE_S });
      slices++;
      const now = jitSecondsOf(broker.pids);
      quiet = jit === null || now === null || (now - jit) / WARMUP_SLICE_S < JIT_QUIET;
      jit = now;
    }
    console.log(
      `  broker warm-up: ${slices * WARMUP_SLICE_S}s of load, not measured (JIT ${quiet ? 'quiet' : 'busy'})`,
    );
  });
}

/**
 * A private three-broker cluster (the local launcher, its own ports and data), warmed up like the shared broker, for
 * the scenarios that measure what a production cluster costs: every produce waits for a second replica, and every
 * transaction's markers too. Its three brokers' CPU is the breakdown's `broker`, and the warm-up waits for all three
 * JITs. `BENCH_CLUSTER_BROKERS` (host:port,…) measures a cluster that is already running instead (left running; its
 * brokers' CPU unknown, so warmed up for the fewest slices).
 */
async function startCluster(): Promise<Broker> {
  const given = process.env.BENCH_CLUSTER_BROKERS;
  if (given) {
    const external: Broker = { brokers: given, source: 'cluster', pids: [], stop: async () => undefined };
    await warmUpBroker(external);
    return external;
  }
  const started = await startPrivateBroker(3);
  const cluster: Broker = {
    brokers: started.brokers,
    source: 'cluster',
    pids: await started.pids(),
    stop: () => started.stop(),
  };
  try {
    await warmUpBroker(cluster, WARMUP_SLICES_MAX * Math.max(1, cluster.pids.length));
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

async function ceilingScenario(): Promise<ScenarioResult> {
  const ceiling = await AppProcess.start('ceiling', {});
  try {
    console.log(`  ceiling: NestJS platform-express, constant answer; measuring ${MEASURE_S}s`);
    const { result } = await measure([ceiling.url], {}, []);
    return {
      ...result,
      cost: null,
      gateway_rss_mb: ceiling.peakRssMb(),
      consumer_rss_mb: null,
      connections: CONNECTIONS,
      note: `no Kafka, ${CONNECTIONS} connections`,
    };
  } finally {
    await ceiling.stop();
  }
}

function kafkaVersion(): string {
  try {
    const jars = execFileSync('ls', [join(root, '.cache/kafka-local/lib')], { encoding: 'utf8' });
    return /kafka_2\.13-([\d.]+)\.jar/.exec(jars)?.[1] ?? 'unknown';
  } catch {
    return 'external';
  }
}

async function main(): Promise<void> {
  const broker = await provideBroker();
  let cluster: Promise<Broker> | undefined;
  const withCluster = async (use: (cluster: Broker) => Promise<ScenarioResult>) =>
    use(await (cluster ??= startCluster()));
  const started = Date.now();
  console.log(`bench (${quick ? 'quick' : 'full'}): broker ${broker.brokers} (${broker.source})`);
  try {
    const scenarios: Record<string, ScenarioResult> = {};
    const runs: Record<string, () => Promise<ScenarioResult>> = {
      ceiling: () => ceilingScenario(),
      pipeline: () => pipelineScenario('pipeline', 1, {}, broker),
      defaults: () => pipelineScenario('defaults', 1, { untuned: true }, broker),
      retries: () => pipelineScenario('retries', 1, { retryShare: 0.1 }, broker),
      fixed_rate: () => pipelineScenario('fixed_rate', 1, { overallRate: 1000 }, broker),
      fixed_rate_2000: () => pipelineScenario('fixed_rate_2000', 1, { overallRate: 2000 }, broker),
      scale: () => pipelineScenario('scale', 2, {}, broker),
      // What a user of `npm start` sees at modest load, on one broker and on three (the targets).
      defaults_16: () => pipelineScenario('defaults_16', 1, { untuned: true, connections: 16 }, broker),
      defaults_48: () => pipelineScenario('defaults_48', 1, { untuned: true, connections: 48 }, broker),
      cluster_48: () =>
        withCluster((cluster) => pipelineScenario('cluster_48', 1, { untuned: true, connections: 48 }, cluster)),
      cluster: () => withCluster((cluster) => pipelineScenario('cluster', 1, { untuned: true }, cluster)),
    };
    // BENCH_SCENARIOS=ceiling,defaults runs those only (for trying one lever); the ratio needs both named ones.
    const chosen = process.env.BENCH_SCENARIOS?.split(',') ?? Object.keys(runs);
    const unknown = chosen.filter((name) => !runs[name]);
    if (unknown.length > 0)
      throw new Error(`BENCH_SCENARIOS: no scenario ${unknown.join(', ')} (${Object.keys(runs).join(', ')})`);
    if (chosen.some((name) => name !== 'ceiling' && !name.startsWith('cluster'))) await warmUpBroker(broker);
    for (const name of chosen) scenarios[name] = await runs[name]();
    const cpu = cpus();
    const report = {
      date: new Date().toISOString(),
      mode: quick ? 'quick' : 'full',
      measure_seconds: MEASURE_S,
      machine: {
        cpus: cpu.length,
        model: cpu[0]?.model ?? 'unknown',
        memory_gb: Math.round(totalmem() / 2 ** 30),
        node: process.version,
        kafka: kafkaVersion(),
      },
      scenarios,
      pipeline_vs_ceiling:
        scenarios.pipeline && scenarios.ceiling
          ? Number((scenarios.pipeline.rps / scenarios.ceiling.rps).toFixed(3))
          : null,
      duration_seconds: Math.round((Date.now() - started) / 1000),
    };
    const dir = join(root, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const json = `${JSON.stringify(report, null, 2)}\n`;
    writeFileSync(join(dir, 'latest.json'), json);
    writeFileSync(join(dir, `${report.date.slice(0, 10)}-${report.mode}.json`), json);
    writeFileSync(join(dir, 'summary.md'), renderSummary(report));
    writeFileSync(join(dir, 'chart.svg'), renderChart(report));
    console.log(renderSummary(report));
  } finally {
    await cluster?.then((c) => c.stop()).catch(() => undefined);
    await broker.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
