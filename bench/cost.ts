import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** A process whose cost the benchmark measures: its role, its pid (null: not on this machine), its /metrics. */
export interface MeasuredProcess {
  role: 'broker' | 'gateway' | 'consumer' | 'load';
  pid: number | null;
  metricsUrl?: string;
}

interface Snapshot {
  cpuSeconds: Record<string, number | null>;
  /** The machine's busy and total CPU time so far, all cores, in clock ticks (/proc/stat); null off Linux. */
  machine: { busy: number; total: number } | null;
  /** Every sample of every process's /metrics, summed by series name and labels. */
  series: Map<string, number>;
}

/** Where each send goes, per scenario: what decides the next lever (README, Performance). */
export interface CostBreakdown {
  /**
   * CPU-seconds per 1,000 answered sends, per role (all processes of the role together); `broker_jit` is the part of
   * the broker's spent by its JIT compiler threads (high while a broker is young, none once it is warm).
   */
  cpu_s_per_1000_sends: Record<string, number | null>;
  /** Kafka requests per send, by API, gateway and consumer together. */
  kafka_requests_per_send: Record<string, number>;
  kafka_request_bytes_per_send: number;
  /** Records written per send: commands, events, changelog, hand-overs and replies. */
  records_written_per_send: number;
  commands_per_transaction: number;
  transactions_per_second: number;
  /**
   * Share of all the machine's cores busy while the scenario was measured, 0–1, whatever ran: near 1, the scenario
   * measured the machine's CPU (every process here shares it), not its latencies.
   */
  machine_busy: number | null;
}

/** Busy and total CPU ticks of all cores (/proc/stat, first line: user nice system idle iowait irq softirq steal). */
function machineTicks(): { busy: number; total: number } | null {
  try {
    const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]
      .trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, total: busy + idle + iowait };
  } catch {
    return null;
  }
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

function cpuSecondsOf(pid: number, thread?: number): number | null {
  try {
    const stat = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/**
 * CPU-seconds of the JIT compiler threads (named "C1 CompilerThre…" and "C2 CompilerThre…") of the JVMs `pids`,
 * together; null when there are none or one cannot be read.
 */
export function jitSecondsOf(pids: number[]): number | null {
  if (pids.length === 0) return null;
  try {
    let seconds = 0;
    for (const pid of pids) {
      for (const thread of readdirSync(`/proc/${pid}/task`).map(Number)) {
        const name = readFileSync(`/proc/${pid}/task/${thread}/comm`, 'utf8');
        if (/^C[12] Compiler/.test(name)) seconds += cpuSecondsOf(pid, thread) ?? 0;
      }
    }
    return seconds;
  } catch {
    return null;
  }
}

async function scrape(url: string, into: Map<string, number>): Promise<void> {
  const text = await (await fetch(url)).text();
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) into.set(match[1], (into.get(match[1]) ?? 0) + Number(match[2]));
  }
}

export async function snapshot(processes: MeasuredProcess[]): Promise<Snapshot> {
  const cpuSeconds: Record<string, number | null> = {};
  for (const { role, pid } of processes) {
    const seconds =
      role === 'load'
        ? process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6
        : pid
          ? cpuSecondsOf(pid)
          : null;
    cpuSeconds[role] = seconds === null || cpuSeconds[role] === null ? null : (cpuSeconds[role] ?? 0) + seconds;
  }
  const brokers = processes.filter(({ role, pid }) => role === 'broker' && pid !== null).map(({ pid }) => pid!);
  if (processes.some(({ role }) => role === 'broker')) cpuSeconds.broker_jit = jitSecondsOf(brokers);
  const series = new Map<string, number>();
  for (const { metricsUrl } of processes) if (metricsUrl) await scrape(metricsUrl, series);
  return { cpuSeconds, series, machine: machineTicks() };
}

/** The series of `name` whose labels include every `label="value"` given, summed. */
function total(series: Map<string, number>, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const [key, value] of series) {
    if ((key === name || key.startsWith(`${name}{`)) && labels.every((label) => key.includes(label))) sum += value;
  }
  return sum;
}

export function breakdown(before: Snapshot, after: Snapshot, sends: number, seconds: number): CostBreakdown {
  const delta = (name: string, ...labels: string[]) =>
    total(after.series, name, ...labels) - total(before.series, name, ...labels);
  const round = (value: number, digits = 3) => Number(value.toFixed(digits));
  const perSend = (value: number) => round(value / Math.max(1, sends));
  const cpu: Record<string, number | null> = {};
  for (const [role, end] of Object.entries(after.cpuSeconds)) {
    const start = before.cpuSeconds[role];
    cpu[role] =
      end === null || start === null || start === undefined ? null : round(((end - start) * 1000) / Math.max(1, sends));
  }
  const apis = new Set(
    [...after.series.keys()].flatMap((key) => /^matrix_kafka_requests_total\{api="([^"]+)"\}/.exec(key)?.[1] ?? []),
  );
  const requests: Record<string, number> = {};
  for (const api of [...apis].sort()) {
    const perApi = perSend(delta('matrix_kafka_requests_total', `api="${api}"`));
    if (perApi > 0) requests[api] = perApi;
  }
  const transactions = delta('matrix_consumer_transactions_total', 'outcome="committed"');
  // One transaction carries the batches of every partition of a round: commands per transaction, not per batch.
  const sendTransactions = delta('matrix_consumer_transactions_total', 'stage="send"', 'outcome="committed"');
  return {
    cpu_s_per_1000_sends: cpu,
    kafka_requests_per_send: requests,
    kafka_request_bytes_per_send: Math.round(delta('matrix_kafka_request_bytes_total') / Math.max(1, sends)),
    records_written_per_send: perSend(
      delta('matrix_kafka_produce_batch_size_sum') + delta('matrix_consumer_records_written_total'),
    ),
    commands_per_transaction: round(
      delta('matrix_consumer_batch_size_sum', 'stage="send"') / Math.max(1, sendTransactions),
      1,
    ),
    transactions_per_second: round(transactions / seconds, 1),
    machine_busy:
      before.machine && after.machine && after.machine.total > before.machine.total
        ? round((after.machine.busy - before.machine.busy) / (after.machine.total - before.machine.total), 2)
        : null,
  };
}
