/**
 * A load-generator process (pinned to the other core by the orchestrator):
 * runs `concurrency` loops against one server until told to stop, counting
 * only what completes after the `mark` message.
 * @module
 */
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { defaultEngine, getEngine } from '../../src/engines/index.js';
import type { TlsClientConfig } from '../../src/engines/types.js';
import { H1Connection } from '../lib/h1.js';
import { AtlsDriver } from '../lib/atls-driver.js';
import { OhttpClient, OHTTP_REQ } from '../lib/ohttp.js';
import { percentile } from '../lib/stats.js';
import { innerRequest, type BenchPki, type FromChild, type LoadJob, type LoadResult, type ToChild } from '../lib/scenarios.js';

function send(m: FromChild): void {
  process.send?.(m);
}

/** Runs one job; `control` tells it when the measured window starts and ends. */
export class LoadRun {
  private measuring = false;
  private stopped = false;
  private markAt = 0;
  private markCpu = 0;
  private ops = 0;
  private resumed = 0;
  private errors = 0;
  private firstError: string | undefined;
  private lat: number[] = [];
  private readonly loops: Promise<void>[] = [];

  constructor(
    private readonly job: LoadJob,
    private readonly pki: BenchPki,
  ) {}

  /** Operations completed in the measured window so far. */
  get completed(): number {
    return this.ops;
  }

  /** Errors so far. */
  get failed(): number {
    return this.errors;
  }

  start(): void {
    for (let i = 0; i < this.job.concurrency; i++) this.loops.push(this.loop());
  }

  mark(): void {
    this.measuring = true;
    this.markAt = performance.now();
    const c = process.cpuUsage();
    this.markCpu = c.user + c.system;
  }

  async stop(): Promise<LoadResult> {
    const elapsedMs = performance.now() - this.markAt;
    const c = process.cpuUsage();
    const cpuUs = c.user + c.system - this.markCpu;
    this.measuring = false;
    this.stopped = true;
    const result: LoadResult = {
      ops: this.ops,
      errors: this.errors,
      elapsedMs,
      p50Us: 0,
      p99Us: 0,
      cpuUs,
      ...(this.firstError ? { firstError: this.firstError } : {}),
      ...(this.job.kind.startsWith('hs-') ? { resumed: this.resumed } : {}),
    };
    const sorted = Float64Array.from(this.lat).sort();
    result.p50Us = percentile(sorted, 50);
    result.p99Us = percentile(sorted, 99);
    await Promise.race([Promise.allSettled(this.loops), new Promise((r) => setTimeout(r, 2000))]);
    return result;
  }

  private record(t0: number, wasMeasuring: boolean, resumed = false): void {
    if (!wasMeasuring || !this.measuring) return;
    this.ops++;
    if (resumed) this.resumed++;
    this.lat.push((performance.now() - t0) * 1000);
  }

  private error(e: unknown): void {
    this.errors++;
    this.firstError ??= e instanceof Error ? e.message : String(e);
  }

  private clientTls(): TlsClientConfig {
    return {
      serverName: 'localhost',
      ca: this.pki.ca.cert,
      minVersion: 'TLSv1.3',
      ...(this.job.mutual ? { cert: this.pki.client.cert, key: this.pki.client.key } : {}),
    };
  }

  private async loop(): Promise<void> {
    try {
      switch (this.job.kind) {
        case 'hs-atls':
          return await this.hsAtls();
        case 'hs-https':
          return await this.hsHttps();
        case 'req-atls':
          return await this.reqAtls();
        case 'req-http':
        case 'req-https':
          return await this.reqPlain();
        case 'req-ohttp':
          return await this.reqOhttp();
      }
    } catch (e) {
      this.error(e);
    }
  }

  /** A fresh ATLS session per iteration over one keep-alive connection; one request rides with the final flight. */
  private async hsAtls(): Promise<void> {
    const job = this.job;
    const engine = job.engine ? getEngine(job.engine) : defaultEngine();
    const base = this.clientTls();
    const inner = innerRequest(job.size);
    let conn = await H1Connection.connect({ port: job.port });
    let ticket: Uint8Array | undefined;
    while (!this.stopped) {
      const t0 = performance.now();
      const m = this.measuring;
      try {
        // A config object per ticket: the engine caches contexts by config object.
        const tls = job.resumed && ticket ? { ...base, session: ticket } : base;
        const d = new AtlsDriver(conn, { tls, engine, mode: job.mode ?? 'exported' });
        const answer = await d.handshake(inner);
        if (!answer || answer.length < job.size) throw new Error('no inner response');
        if (job.resumed) ticket = d.ticket ?? ticket;
        this.record(t0, m, d.trace.resumed);
      } catch (e) {
        this.error(e);
        conn.close();
        conn = await H1Connection.connect({ port: job.port });
      }
    }
    conn.close();
  }

  /** A fresh TLS connection per request (`Connection: close`), like a client without keep-alive. */
  private async hsHttps(): Promise<void> {
    const job = this.job;
    const body = new Uint8Array(job.size).fill(0x61);
    const tls = {
      servername: 'localhost',
      ca: this.pki.ca.cert,
      minVersion: 'TLSv1.3' as const,
      ...(job.mutual ? { cert: this.pki.client.cert, key: this.pki.client.key } : {}),
    };
    let session: Buffer | undefined;
    while (!this.stopped) {
      const t0 = performance.now();
      const m = this.measuring;
      try {
        const conn = await H1Connection.connect({ port: job.port, tls: job.resumed && session ? { ...tls, session } : tls });
        const s = conn.socket as TLSSocket;
        if (job.resumed) s.once('session', (b: Buffer) => (session = b));
        const res = await conn.request('POST', '/echo', { 'content-type': 'application/octet-stream', connection: 'close' }, body);
        if (res.status !== 200 || res.body.length !== job.size) throw new Error(`HTTPS answered ${res.status}`);
        const reused = s.isSessionReused();
        conn.close();
        this.record(t0, m, reused);
      } catch (e) {
        this.error(e);
      }
    }
  }

  /** Requests over one established ATLS session per loop. */
  private async reqAtls(): Promise<void> {
    const job = this.job;
    const inner = innerRequest(job.size);
    const conn = await H1Connection.connect({ port: job.port });
    const d = new AtlsDriver(conn, { tls: this.clientTls(), engine: job.engine ? getEngine(job.engine) : defaultEngine(), mode: job.mode ?? 'exported' });
    await d.handshake();
    while (!this.stopped) {
      const t0 = performance.now();
      const m = this.measuring;
      const answer = await d.request(inner);
      if (answer.length < job.size) throw new Error('short inner response');
      this.record(t0, m);
    }
    conn.close();
  }

  /** Oblivious HTTP requests (a fresh HPKE encapsulation each) over one keep-alive connection per loop, straight to the gateway. */
  private async reqOhttp(): Promise<void> {
    const job = this.job;
    const inner = innerRequest(job.size);
    const conn = await H1Connection.connect({ port: job.port });
    const keys = await conn.request('GET', '/ohttp-keys', {});
    const client = await OhttpClient.fromKeyConfig(keys.body);
    const headers = { 'content-type': OHTTP_REQ };
    while (!this.stopped) {
      const t0 = performance.now();
      const m = this.measuring;
      const { body, open } = await client.encapsulate(inner);
      const res = await conn.request('POST', '/gateway', headers, body);
      if (res.status !== 200) throw new Error(`OHTTP gateway answered ${res.status}`);
      const answer = await open(res.body);
      if (answer.length < job.size) throw new Error('short inner response');
      this.record(t0, m);
    }
    conn.close();
  }

  /** Requests over one keep-alive HTTP or HTTPS connection per loop. */
  private async reqPlain(): Promise<void> {
    const job = this.job;
    const body = new Uint8Array(job.size).fill(0x61);
    const conn = await H1Connection.connect({
      port: job.port,
      ...(job.kind === 'req-https' ? { tls: { servername: 'localhost', ca: this.pki.ca.cert } } : {}),
    });
    const headers = { 'content-type': 'application/octet-stream' };
    while (!this.stopped) {
      const t0 = performance.now();
      const m = this.measuring;
      const res = await conn.request('POST', '/echo', headers, body);
      if (res.status !== 200 || res.body.length !== job.size) throw new Error(`server answered ${res.status}`);
      this.record(t0, m);
    }
    conn.close();
  }
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  let run: LoadRun | undefined;
  process.on('message', (m: ToChild) => {
    if (m.type === 'run') {
      run = new LoadRun(m.job, m.pki);
      run.start();
      send({ type: 'ready' });
    } else if (m.type === 'mark') {
      run?.mark();
    } else if (m.type === 'stop') {
      void run?.stop().then((result) => {
        send({ type: 'result', result });
        process.disconnect();
      });
    }
  });
  process.on('disconnect', () => process.exit(0));
}
