import type { CostBreakdown } from './cost';
import type { LoadResult } from './load';

/** One scenario's measurement, with the processes' memory. */
export interface ScenarioResult extends LoadResult {
  gateway_rss_mb: number;
  consumer_rss_mb: number | null;
  connections: number;
  note: string;
  /** Where each send went (pipeline scenarios); null for the ceiling. */
  cost: CostBreakdown | null;
}

export interface BenchReport {
  date: string;
  mode: string;
  measure_seconds: number;
  machine: { cpus: number; model: string; memory_gb: number; node: string; kafka: string };
  scenarios: Record<string, ScenarioResult>;
  /** Null unless both scenarios ran (BENCH_SCENARIOS). */
  pipeline_vs_ceiling: number | null;
}

export function renderSummary(report: BenchReport): string {
  const { machine } = report;
  const rows = Object.entries(report.scenarios).map(
    ([name, s]) =>
      `| ${name} | ${s.rps} | ${s.p50_ms} | ${s.p90_ms} | ${s.p99_ms} | ${s.max_ms} | ${s.non2xx} | ${s.bad_answers + s.retry_mismatches} | ${s.gateway_rss_mb} | ${s.consumer_rss_mb ?? '–'} | ${s.note} |`,
  );
  return [
    `Benchmark of ${report.date.slice(0, 10)} (${report.mode}, ${report.measure_seconds} s per scenario) on ${machine.cpus} × ${machine.model},`,
    `${machine.memory_gb} GB, Node ${machine.node}, Kafka ${machine.kafka}; broker, apps and load generator on the same machine.`,
    '',
    '| scenario | sends/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | wrong answers | gateway RSS MB | consumer RSS MB | load |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    report.pipeline_vs_ceiling === null
      ? 'Pipeline against the HTTP ceiling: not measured (both scenarios must run).'
      : `Pipeline throughput is **${(report.pipeline_vs_ceiling * 100).toFixed(0)}%** of the HTTP ceiling measured in the same run.`,
    `Retries checked: ${report.scenarios.retries?.retries ?? 0}, of which ${report.scenarios.retries?.retry_mismatches ?? 0} got another event_id.`,
    '',
    ...renderCosts(report),
  ].join('\n');
}

/** Where each send went, per pipeline scenario (README, Performance: what decides the next lever). */
function renderCosts(report: BenchReport): string[] {
  const costed = Object.entries(report.scenarios).flatMap(([name, s]) => (s.cost ? [[name, s.cost] as const] : []));
  if (costed.length === 0) return [];
  const cpu = (value: number | null | undefined) => (value === null || value === undefined ? '–' : value.toFixed(2));
  const top = (requests: Record<string, number>) =>
    Object.entries(requests)
      .sort(([, a], [, b]) => b - a)
      .slice(0, 6)
      .map(([api, n]) => `${api} ${n}`)
      .join(', ');
  return [
    'Cost per send (CPU-seconds per 1,000 sends by process, the broker with its JIT compiler threads in brackets;',
    'Kafka requests per send by API, the six most frequent; machine busy: the share of all cores busy meanwhile):',
    '',
    '| scenario | broker | gateway | consumer | load | machine busy | commands/txn | txn/s | records/send | request bytes/send | Kafka requests per send |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...costed.map(
      ([name, c]) =>
        `| ${name} | ${cpu(c.cpu_s_per_1000_sends.broker)} (${cpu(c.cpu_s_per_1000_sends.broker_jit)}) | ${cpu(c.cpu_s_per_1000_sends.gateway)} | ${cpu(c.cpu_s_per_1000_sends.consumer)} | ${cpu(c.cpu_s_per_1000_sends.load)} | ${c.machine_busy === null || c.machine_busy === undefined ? '–' : `${Math.round(c.machine_busy * 100)}%`} | ${c.commands_per_transaction} | ${c.transactions_per_second} | ${c.records_written_per_send} | ${c.kafka_request_bytes_per_send} | ${top(c.kafka_requests_per_send)} |`,
    ),
    '',
  ];
}

/** A small SVG: throughput per scenario, and latency percentiles per scenario. */
export function renderChart(report: BenchReport): string {
  const entries = Object.entries(report.scenarios);
  const width = 760;
  const panelHeight = 220;
  const left = 110;
  const barArea = width - left - 60;
  const maxRps = Math.max(...entries.map(([, s]) => s.rps), 1);
  const maxLatency = Math.max(...entries.map(([, s]) => s.p99_ms), 1);
  const rowHeight = panelHeight / entries.length;
  const text = (x: number, y: number, value: string, anchor = 'start', size = 12) =>
    `<text x="${x}" y="${y}" font-size="${size}" text-anchor="${anchor}" font-family="sans-serif">${value}</text>`;
  const parts: string[] = [];
  parts.push(
    text(10, 20, `Throughput (sends/s) — ${report.machine.cpus} CPUs, ${report.date.slice(0, 10)}`, 'start', 14),
  );
  entries.forEach(([name, s], i) => {
    const y = 35 + i * rowHeight;
    const w = (s.rps / maxRps) * barArea;
    parts.push(text(left - 8, y + rowHeight / 2 + 4, name, 'end'));
    parts.push(
      `<rect x="${left}" y="${y + 4}" width="${w.toFixed(1)}" height="${(rowHeight - 8).toFixed(1)}" fill="${name === 'ceiling' ? '#9aa5b1' : '#3b82f6'}"/>`,
    );
    parts.push(text(left + w + 6, y + rowHeight / 2 + 4, String(s.rps)));
  });
  const top = 35 + panelHeight + 40;
  parts.push(text(10, top - 10, 'Latency (ms): p50, p90, p99', 'start', 14));
  const colors = { p50_ms: '#22c55e', p90_ms: '#f59e0b', p99_ms: '#ef4444' } as const;
  entries.forEach(([name, s], i) => {
    const y = top + i * rowHeight;
    parts.push(text(left - 8, y + rowHeight / 2 + 4, name, 'end'));
    (Object.keys(colors) as (keyof typeof colors)[]).forEach((key, j) => {
      const h = (rowHeight - 8) / 3;
      const w = (s[key] / maxLatency) * barArea;
      parts.push(
        `<rect x="${left}" y="${(y + 4 + j * h).toFixed(1)}" width="${w.toFixed(1)}" height="${h.toFixed(1)}" fill="${colors[key]}"/>`,
      );
      parts.push(text(left + w + 6, y + 4 + j * h + h - 1, String(s[key]), 'start', 10));
    });
  });
  const height = top + panelHeight + 20;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"><rect width="100%" height="100%" fill="white"/>${parts.join('')}</svg>\n`;
}
