/**
 * Figure 4, run in its own process with `--expose-gc`: drives the Web
 * handler in-process (no sockets) to establish architecture-(b) sessions and
 * half-open handshakes, and reports heap and RSS deltas after full GCs.
 * Usage (by the orchestrator): a `run` message with {@link MemoryJob}.
 * @module
 */
import { fileURLToPath } from 'node:url';
import { AtlsClientSession } from '../../src/session/session.js';
import { defaultEngine } from '../../src/engines/index.js';
import { nativeMallocInfo, nativeMallocTrim } from '../../src/engines/openssl.js';
import type { TlsClientConfig, TlsServerConfig } from '../../src/engines/types.js';
import { createAtlsHandler, type AtlsHandler } from '../../src/http/index.js';
import { COOKIE_NAME, DEFAULT_MAX_HALF_OPEN, MEDIA_TYPE_FLIGHT } from '../../src/http/constants.js';
import type { BenchPki } from '../lib/scenarios.js';

/** What to measure. */
export interface MemoryJob {
  pki: BenchPki;
  credential: 'ecdsa' | 'psk';
  /** Established-session counts at which to measure, ascending. */
  checkpoints: number[];
  /** Also measure half-open handshakes up to the handler's cap. */
  halfOpen: boolean;
  /** Session mode (default `exported`, architecture b); `records` keeps a live TLS engine per session. */
  mode?: 'exported' | 'records';
}

/** One measurement point. */
export interface MemoryPoint {
  what: 'established' | 'half-open';
  mode: 'exported' | 'records';
  sessions: number;
  heapBytesPerSession: number;
  rssBytesPerSession: number;
  /** Native memory (malloc'd, glibc only) per session: OpenSSL objects and buffers the heap figure cannot see. */
  mallocBytesPerSession?: number;
  /** RSS per session after `malloc_trim(0)` (glibc only; last checkpoint): what is left once freed malloc pages go back. */
  rssTrimmedBytesPerSession?: number;
  seconds: number;
}

/**
 * Heap (JS heap + external), RSS and malloc'd bytes after full GCs with event-loop
 * turns between them: Node runs the finalizers of collected native objects (the
 * engine's dropped connection wrappers) from the loop, never between microtasks.
 */
async function usage(): Promise<{ heap: number; rss: number; malloc: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  for (let i = 0; i < 3; i++) {
    gc();
    await loopTurn();
  }
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed + m.external, rss: m.rss, malloc: nativeMallocInfo()?.inUse ?? NaN };
}

const loopTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Sessions built between event-loop turns (a server turns its loop for every request it reads). */
const SESSIONS_PER_TURN = 100;

const URL_EP = 'http://localhost/.well-known/atls';

async function post(handler: AtlsHandler, body: Uint8Array, cookie?: string): Promise<{ body: Uint8Array; cookie?: string; status: number }> {
  const headers: Record<string, string> = { 'content-type': MEDIA_TYPE_FLIGHT };
  if (cookie) headers.cookie = `${COOKIE_NAME}=${cookie}`;
  const res = await handler(new Request(URL_EP, { method: 'POST', headers, body }));
  const out = new Uint8Array(await res.arrayBuffer());
  const sc = res.headers.get('set-cookie');
  const m = sc ? /atls-session=([^;]*)/.exec(sc) : null;
  return { body: out, status: res.status, ...(m ? { cookie: m[1]! } : {}) };
}

/** Runs a job; exported for the smoke test. */
export async function runMemory(job: MemoryJob): Promise<MemoryPoint[]> {
  const engine = defaultEngine();
  const { pki } = job;
  const psk = { identity: pki.psk.identity, key: Buffer.from(pki.psk.keyHex, 'hex') };
  const serverTls: TlsServerConfig =
    job.credential === 'psk'
      ? { minVersion: 'TLSv1.3', pskLookup: (id) => (id === psk.identity ? psk.key : undefined) }
      : { minVersion: 'TLSv1.3', cert: pki.server.cert, key: pki.server.key };
  const clientTls: TlsClientConfig =
    job.credential === 'psk' ? { minVersion: 'TLSv1.3', psk } : { minVersion: 'TLSv1.3', serverName: 'localhost', ca: pki.ca.cert };
  const last = job.checkpoints[job.checkpoints.length - 1] ?? 0;
  const mode = job.mode ?? 'exported';
  const handler = createAtlsHandler({ tls: serverTls, app: () => new Response('ok'), engine, mode, limits: { maxSessions: last + 10 } });
  const points: MemoryPoint[] = [];

  // Warm up every code path once, then take the baseline.
  const warm = new AtlsClientSession({ engine, tls: clientTls, mode });
  const w1 = await post(handler, (await warm.start()).flight);
  await post(handler, (await warm.receive(w1.body)).flight, w1.cookie);
  warm.destroy();
  const base = await usage();
  const t0 = performance.now();
  let made = 0;
  for (const target of job.checkpoints) {
    while (made < target) {
      const c = new AtlsClientSession({ engine, tls: clientTls, mode });
      const r1 = await post(handler, (await c.start()).flight);
      const out = await c.receive(r1.body);
      const r2 = await post(handler, out.flight, r1.cookie);
      await c.receive(r2.body);
      if (c.state !== 'established' || r2.status !== 200) throw new Error(`session ${made} not established (${r2.status})`);
      c.destroy();
      made++;
      if (made % SESSIONS_PER_TURN === 0) await loopTurn();
    }
    const u = await usage();
    const held = (handler.stats().sessions ?? made + 1) - 1; // minus the warm-up session
    points.push({
      what: 'established',
      mode,
      sessions: held,
      heapBytesPerSession: (u.heap - base.heap) / held,
      rssBytesPerSession: (u.rss - base.rss) / held,
      ...(Number.isNaN(u.malloc) ? {} : { mallocBytesPerSession: (u.malloc - base.malloc) / held }),
      seconds: (performance.now() - t0) / 1000,
    });
  }
  const final = points[points.length - 1];
  if (final && nativeMallocInfo()) {
    nativeMallocTrim();
    final.rssTrimmedBytesPerSession = ((await usage()).rss - base.rss) / final.sessions;
  }
  await handler.close();

  if (job.halfOpen) {
    // A long half-open TTL: on a busy machine filling the cap can take longer than the default 30 s,
    // and expiring handshakes would keep it from ever being reached.
    const h = createAtlsHandler({ tls: serverTls, app: () => new Response('ok'), engine, limits: { handshakeTtlMs: 3_600_000 } });
    const hello = (await new AtlsClientSession({ engine, tls: clientTls }).start()).flight;
    await post(h, hello);
    const b0 = await usage();
    const t1 = performance.now();
    // The cap evicts the oldest handshake instead of refusing a new one: fill it exactly.
    while (h.stats().halfOpen < DEFAULT_MAX_HALF_OPEN) {
      const c = new AtlsClientSession({ engine, tls: clientTls });
      const r = await post(h, (await c.start()).flight);
      c.destroy();
      if (r.status !== 200) throw new Error(`ClientHello answered ${r.status}`);
      if (h.stats().halfOpen % SESSIONS_PER_TURN === 0) await loopTurn();
    }
    const n = h.stats().halfOpen - 1; // minus the one before the baseline
    const u = await usage();
    points.push({
      what: 'half-open',
      mode,
      sessions: n,
      heapBytesPerSession: (u.heap - b0.heap) / n,
      rssBytesPerSession: (u.rss - b0.rss) / n,
      ...(Number.isNaN(u.malloc) ? {} : { mallocBytesPerSession: (u.malloc - b0.malloc) / n }),
      seconds: (performance.now() - t1) / 1000,
    });
    await h.close();
  }
  return points;
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  process.on('message', (m: { type: 'memory'; job: MemoryJob }) => {
    runMemory(m.job).then(
      (points) => process.send!({ type: 'memory', points }, () => process.exit(0)),
      (e: unknown) => process.send!({ type: 'error', message: String(e) }, () => process.exit(1)),
    );
  });
}
