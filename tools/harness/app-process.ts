import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

/**
 * The project's processes as tests and the benchmark run them: each app on a free port, its readiness awaited,
 * stopped as an orchestrator would (SIGTERM), killed as a crash would, or frozen as a zombie.
 */
const DIST = resolve(__dirname, '../..');

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/** Topic and group names of a run's own, so runs never see each other's records on a shared broker. */
export function isolatedTopics(): Record<string, string> {
  const ns = `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  return {
    KAFKA_TOPIC_COMMANDS: `${ns}.commands`,
    KAFKA_TOPIC_TXNS: `${ns}.txns`,
    KAFKA_TOPIC_EVENTS: `${ns}.events`,
    KAFKA_TOPIC_DEAD_LETTERS: `${ns}.dead-letters`,
    KAFKA_TOPIC_ANNOTATIONS: `${ns}.annotations`,
    KAFKA_TOPIC_ANNOTATION_STATE: `${ns}.annotations.state`,
    KAFKA_REPLY_TOPIC_PREFIX: `${ns}.replies.`,
    KAFKA_CONSUMER_GROUP: `${ns}.consumer`,
  };
}

const APPS = {
  gateway: {
    entry: join(DIST, 'apps', 'gateway', 'src', 'main.js'),
    portVar: 'GATEWAY_PORT',
    metricsPortVar: 'GATEWAY_METRICS_PORT',
  },
  consumer: {
    entry: join(DIST, 'apps', 'consumer', 'src', 'main.js'),
    portVar: 'CONSUMER_PORT',
    metricsPortVar: 'CONSUMER_METRICS_PORT',
  },
  /** The benchmark's HTTP ceiling: the same route, a constant answer, no Kafka (and no metrics). */
  ceiling: {
    entry: join(DIST, 'bench', 'ceiling-app.js'),
    portVar: 'GATEWAY_PORT',
    metricsPortVar: 'GATEWAY_METRICS_PORT',
  },
};
export type AppName = keyof typeof APPS;

export class AppProcess {
  private exited: Promise<number | null>;
  readonly output: string[] = [];

  constructor(
    readonly name: AppName,
    readonly url: string,
    /** Where the app serves `/metrics`: a port of its own, on loopback. */
    readonly metricsUrl: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((done) => child.once('exit', (code) => done(code)));
    const keep = (chunk: Buffer): void => {
      this.output.push(chunk.toString());
      if (process.env.TEST_APP_LOGS) process.stderr.write(`[${name}] ${chunk.toString()}`);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  /**
   * Starts an app and waits until it is ready. A consumer gets a state directory of its own unless `env` names one
   * (two live consumers must never share one); `nodeArgs` go to its Node (say `--max-old-space-size=128`);
   * `waitReady: false` returns once it was spawned, for an app that is not meant to become ready.
   */
  static async start(
    name: AppName,
    env: Record<string, string>,
    options: { nodeArgs?: string[]; waitReady?: boolean } = {},
  ): Promise<AppProcess> {
    const port = await freePort();
    const { entry, portVar, metricsPortVar } = APPS[name];
    const metricsPort = env[metricsPortVar] ?? String(await freePort());
    // APP_NODE_ARGS: options for the apps' Node (say `--cpu-prof --cpu-prof-dir=/tmp/prof`); NODE_OPTIONS refuses some.
    const nodeArgs = [...(process.env.APP_NODE_ARGS?.split(' ').filter(Boolean) ?? []), ...(options.nodeArgs ?? [])];
    const stateDir =
      name === 'consumer' && env.STATE_DIR === undefined
        ? { STATE_DIR: mkdtempSync(join(tmpdir(), 'matrix-send-state-')) }
        : {};
    const child = spawn(process.execPath, [...nodeArgs, entry], {
      env: { ...process.env, ...env, ...stateDir, [portVar]: String(port), [metricsPortVar]: metricsPort },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const app = new AppProcess(name, `http://127.0.0.1:${port}`, `http://127.0.0.1:${metricsPort}/metrics`, child);
    // An app that never became ready is not left running under a test that can no longer stop it.
    if (options.waitReady !== false) {
      try {
        await app.waitReady();
      } catch (error) {
        await app.kill();
        throw error;
      }
    }
    return app;
  }

  /** The exit code once the process has exited; null while it runs. */
  get exitCode(): number | null {
    return this.child.exitCode;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Peak resident memory so far (VmHWM), in MB; Linux only. */
  peakRssMb(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
    return Math.round(kb / 1024);
  }

  async waitReady(timeoutMs = 60000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null)
        throw new Error(`${this.name} exited (${this.child.exitCode}):\n${this.output.join('')}`);
      const ok = await fetch(`${this.url}/health/ready`).then(
        (res) => res.ok,
        () => false,
      );
      if (ok) return;
      await new Promise((done) => setTimeout(done, 100));
    }
    throw new Error(`${this.name} not ready within ${timeoutMs} ms:\n${this.output.join('')}`);
  }

  /** A graceful stop (SIGTERM), as an orchestrator does it; one that takes longer than `graceMs` is an error. */
  async stop(graceMs = 30000): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((done) => (timer = setTimeout(() => done('late'), graceMs)));
    const code = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (code === 'late') {
      this.child.kill('SIGKILL');
      await this.exited;
      throw new Error(`${this.name} did not stop within ${graceMs} ms of SIGTERM:\n${this.output.slice(-20).join('')}`);
    }
    return code;
  }

  /** A zombie in the making: the process stops (SIGSTOP) and misses its heartbeats, but keeps its state and sockets. */
  pause(): void {
    this.child.kill('SIGSTOP');
  }

  /** The zombie wakes up (SIGCONT) and carries on from where it stopped. */
  resume(): void {
    this.child.kill('SIGCONT');
  }

  /** A crash: no shutdown hooks, no goodbye to the group. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}
