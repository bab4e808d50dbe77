/**
 * Child processes of the benchmark and how they share this machine's cores:
 * with two or more cores the server process is pinned to core 0 and the
 * load processes to core 1 (`taskset -a -p`), so neither steals the other's
 * CPU and the server's own CPU time says whether it was the bottleneck.
 *
 * @example
 * ```ts
 * const server = await startServer({ kind: 'http' }, pki);
 * const r = await runLoad({ kind: 'req-http', port: server.port, concurrency: 32, size: 100 }, pki, server, timing);
 * await server.stop();
 * ```
 * @module
 */
import { fork, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { BenchPki, FromChild, LoadJob, LoadResult, ServerSpec, ToChild } from './scenarios.js';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

let tasksetOk: boolean | undefined;

/** True when processes can be pinned (two or more cores and `taskset` present). */
export function canPin(): boolean {
  if (tasksetOk === undefined) {
    try {
      execFileSync('taskset', ['-V'], { stdio: 'ignore' });
      tasksetOk = cpus().length >= 2;
    } catch {
      tasksetOk = false;
    }
  }
  return tasksetOk;
}

/** The core the server runs on and the core the load runs on (undefined: not pinned). */
export const SERVER_CPU = 0;
export const LOAD_CPU = 1;

function pin(pid: number | undefined, cpu: number): void {
  if (pid === undefined || !canPin()) return;
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
  } catch {
    // Pinning is an improvement, not a requirement.
  }
}

/** A forked child speaking {@link ToChild} / {@link FromChild}. */
export class Child {
  private readonly waiters: Array<(m: FromChild) => void> = [];
  readonly exited: Promise<void>;

  constructor(
    readonly proc: ChildProcess,
  ) {
    proc.on('message', (m: FromChild) => {
      const w = this.waiters.shift();
      w?.(m);
    });
    this.exited = new Promise((r) => proc.once('exit', () => r()));
  }

  /**
   * Forks `file` (a .ts under bench/) with tsx, optionally pinned to `cpu`, with extra node flags;
   * `wrap` runs node under another program (`valgrind ... node`), which keeps the IPC channel.
   */
  static fork(file: string, cpu: number | undefined, execArgv: string[] = [], wrap?: { execPath: string; prefix: string[] }): Child {
    const proc = fork(here(file), [], {
      ...(wrap ? { execPath: wrap.execPath } : {}),
      execArgv: [...(wrap?.prefix ?? []), '--import', 'tsx', ...execArgv],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    if (cpu !== undefined) pin(proc.pid, cpu);
    return new Child(proc);
  }

  /** Sends a message and resolves with the next message from the child. */
  ask(m: ToChild): Promise<FromChild> {
    return new Promise((resolve, reject) => {
      const onExit = (): void => reject(new Error('benchmark child exited'));
      this.proc.once('exit', onExit);
      this.waiters.push((r) => {
        this.proc.off('exit', onExit);
        if (r.type === 'error') reject(new Error(r.message));
        else resolve(r);
      });
      this.proc.send(m);
    });
  }

  tell(m: ToChild): void {
    this.proc.send(m);
  }

  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill();
  }
}

/** A running server process. */
export interface ServerHandle {
  port: number;
  /** The server process's CPU time so far, µs, and its main thread's alone. */
  cpu(): Promise<{ cpuUs: number; mainUs: number; rss: number }>;
  stop(): Promise<void>;
}

/** Starts a server process (pinned to {@link SERVER_CPU}) and waits until it listens. */
export async function startServer(spec: ServerSpec, pki: BenchPki): Promise<ServerHandle> {
  // BENCH_CPU_PROF=<dir>: write a V8 CPU profile of every server process (open it in Chrome DevTools).
  const prof = process.env.BENCH_CPU_PROF;
  const child = Child.fork('../procs/server.ts', SERVER_CPU, prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []);
  const r = await child.ask({ type: 'start-server', spec, pki });
  if (r.type !== 'ready' || r.port === undefined) throw new Error('server did not start');
  return {
    port: r.port,
    cpu: async () => {
      const m = await child.ask({ type: 'cpu' });
      if (m.type !== 'cpu') throw new Error('unexpected answer');
      return { cpuUs: m.cpuUs, mainUs: m.mainUs, rss: m.rss };
    },
    stop: async () => {
      child.tell({ type: 'stop' });
      await Promise.race([child.exited, new Promise((r) => setTimeout(r, 2000))]);
      child.kill();
    },
  };
}

/** Timing of a load run. */
export interface LoadTiming {
  warmupMs: number;
  durationMs: number;
  /** Load processes (default 1; all on {@link LOAD_CPU}). */
  processes?: number;
}

/** A load run's figures, summed over the load processes, with the server's CPU in the same window. */
export interface LoadSummary extends LoadResult {
  /** Completed operations per second of wall time. */
  rate: number;
  /** Server CPU time per operation, µs. */
  serverUsPerOp: number;
  /**
   * The server's main thread alone per operation, µs: without V8's GC helper
   * and compiler threads, whose work in a short window of a young process
   * weighs on slow rows far more than in a long-running server.
   */
  serverMainUsPerOp: number;
  /** Server CPU busy share in the window (1 = one core fully used). */
  serverBusy: number;
  /** Load-generator CPU busy share (summed over processes). */
  loadBusy: number;
  /** Operations per server CPU-second: the rate a saturated server core would reach. */
  capacity: number;
}

/** Runs `job` in load processes against `server`; throws when nothing completed. */
export async function runLoad(job: LoadJob, pki: BenchPki, server: ServerHandle, timing: LoadTiming): Promise<LoadSummary> {
  const n = timing.processes ?? 1;
  const kids = Array.from({ length: n }, () => Child.fork('../procs/load.ts', LOAD_CPU));
  try {
    await Promise.all(kids.map((k) => k.ask({ type: 'run', job, pki })));
    await sleep(timing.warmupMs);
    const c0 = await server.cpu();
    for (const k of kids) k.tell({ type: 'mark' });
    await sleep(timing.durationMs);
    const results = await Promise.all(
      kids.map(async (k) => {
        const m = await k.ask({ type: 'stop' });
        if (m.type !== 'result') throw new Error('load child did not report');
        return m.result;
      }),
    );
    const c1 = await server.cpu();
    const ops = results.reduce((a, r) => a + r.ops, 0);
    const elapsedMs = Math.max(...results.map((r) => r.elapsedMs));
    const serverCpu = c1.cpuUs - c0.cpuUs;
    const loadCpu = results.reduce((a, r) => a + r.cpuUs, 0);
    const errors = results.reduce((a, r) => a + r.errors, 0);
    const firstError = results.find((r) => r.firstError)?.firstError;
    if (ops === 0) throw new Error(`no operation completed (${errors} errors${firstError ? `, first: ${firstError}` : ''})`);
    // Percentiles: the load processes run the same loops, so the worst of them is reported.
    return {
      ops,
      errors,
      ...(firstError ? { firstError } : {}),
      elapsedMs,
      p50Us: Math.max(...results.map((r) => r.p50Us)),
      p99Us: Math.max(...results.map((r) => r.p99Us)),
      cpuUs: loadCpu,
      ...(results[0]?.resumed !== undefined ? { resumed: results.reduce((a, r) => a + (r.resumed ?? 0), 0) } : {}),
      rate: (ops * 1000) / elapsedMs,
      serverUsPerOp: serverCpu / ops,
      serverMainUsPerOp: (c1.mainUs - c0.mainUs) / ops,
      serverBusy: serverCpu / (elapsedMs * 1000),
      loadBusy: loadCpu / (elapsedMs * 1000),
      capacity: (ops * 1e6) / serverCpu,
    };
  } finally {
    for (const k of kids) k.kill();
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The independent load generator (`bench/go-client`, Go's crypto/tls and net/http), built on first use; undefined without `go`. */
export function goClient(): string | undefined {
  const out = here('../out/atls-go-client');
  try {
    execFileSync('go', ['build', '-o', out, '.'], { cwd: here('../go-client'), stdio: ['ignore', 'ignore', 'inherit'] });
    return out;
  } catch {
    return undefined;
  }
}

/**
 * Runs the Go client with `args` against `server` (pinned to {@link LOAD_CPU}): warm-up, "mark",
 * the measured window, "stop"; the server's CPU is read around the window as in {@link runLoad}.
 */
export async function runGoLoad(binary: string, args: string[], server: ServerHandle, timing: LoadTiming): Promise<LoadSummary> {
  const proc = spawn(binary, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  pin(proc.pid, LOAD_CPU);
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  try {
    await sleep(timing.warmupMs);
    const c0 = await server.cpu();
    proc.stdin.write('mark\n');
    await sleep(timing.durationMs);
    proc.stdin.write('stop\n');
    await Promise.race([exited, sleep(5000)]);
    const c1 = await server.cpu();
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as LoadResult;
    if (!r.ops) throw new Error(`go client: no operation completed (${r.errors} errors${r.firstError ? `, first: ${r.firstError}` : ''})`);
    const serverCpu = c1.cpuUs - c0.cpuUs;
    return {
      ...r,
      p50Us: 0,
      p99Us: 0,
      rate: (r.ops * 1000) / r.elapsedMs,
      serverUsPerOp: serverCpu / r.ops,
      serverMainUsPerOp: (c1.mainUs - c0.mainUs) / r.ops,
      serverBusy: serverCpu / (r.elapsedMs * 1000),
      loadBusy: r.cpuUs / (r.elapsedMs * 1000),
      capacity: (r.ops * 1e6) / serverCpu,
    };
  } finally {
    if (proc.exitCode === null) proc.kill();
  }
}
