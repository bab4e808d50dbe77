/**
 * What the operator sees of `atls serve`, `atls proxy` and `atls gateway`:
 * one log line per event (`--log-format json|text`, `--log-level`) and a
 * Prometheus endpoint (`--metrics HOST:PORT`, prom-client). Built on the
 * bindings' `onEvent` hooks. Never logged: keys, exported material, whole
 * session ids (they are bearer cookies: a short digest stands for them),
 * bodies, inner requests (plaintext).
 * @module
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { AtlsError } from '../errors.js';
import type { AtlsServerEvent } from '../http/server.js';
import type { AtlsClientEvent } from '../http/client.js';
import type { AtlsCoapServerEvent } from '../coap/server.js';
import type { GatewayEvent } from '../coap/gateway.js';
import { httpServerTimeouts, limitConnections, type ConnectionLimits } from '../http/connections.js';
import { parseHostPort } from './options.js';
import { peerGroup } from '../peers.js';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'json' | 'text';
type Fields = Record<string, string | number | boolean | undefined>;

/** A short, stable stand-in for a session id in logs: never the bearer value itself. */
export function logId(id: string | undefined): string | undefined {
  return id === undefined ? undefined : createHash('sha256').update(id).digest('base64url').slice(0, 10);
}

/** Lines of one kind (event + limit + peer) beyond one per second are counted, not printed. */
const QUIET_MS = 1000;

/** One line per event, JSON or `key=value` text. */
export class EventLog {
  private readonly threshold: number;
  private readonly quiet = new Map<string, { until: number; suppressed: number }>();

  constructor(
    private readonly format: LogFormat,
    level: LogLevel,
    private readonly write: (line: string) => void = (l) => process.stdout.write(l),
  ) {
    this.threshold = LOG_LEVELS.indexOf(level);
  }

  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) <= this.threshold;
  }

  /** Logs `event`; `burstKey` marks events a flood can repeat (at most one line a second per key). */
  log(level: LogLevel, event: string, fields: Fields, burstKey?: string): void {
    if (!this.enabled(level)) return;
    const all: Fields = { ...fields };
    if (burstKey !== undefined) {
      const now = Date.now();
      const q = this.quiet.get(burstKey);
      if (q && q.until > now) {
        q.suppressed++;
        return;
      }
      if (q?.suppressed) all.suppressed = q.suppressed;
      if (this.quiet.size > 10_000) this.quiet.clear(); // bounded, whatever the number of peers
      this.quiet.set(burstKey, { until: now + QUIET_MS, suppressed: 0 });
    }
    const time = new Date().toISOString();
    if (this.format === 'json') {
      this.write(`${JSON.stringify({ time, level, event, ...all })}\n`);
      return;
    }
    let line = `${time} ${level} ${event}`;
    for (const [k, v] of Object.entries(all)) {
      if (v === undefined) continue;
      line += ` ${k}=${textValue(String(v))}`;
    }
    this.write(`${line}\n`);
  }
}

/**
 * A value of a text line: bare when it is one plain token, else quoted, with every control
 * character escaped (JSON escapes C0; DEL, C1 and the Unicode line separators too), so a value a
 * peer chose (a reported issuer) can neither start a line of its own nor drive a terminal.
 */
function textValue(text: string): string {
  // eslint-disable-next-line no-control-regex
  if (!/[\s"=\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(text)) return text;
  return JSON.stringify(text).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The metrics of one process, labelled by transport (`http`, `coap`, `gateway`, `proxy`). */
export class Metrics {
  readonly registry = new Registry();
  readonly handshakes = new Counter({ name: 'atls_handshakes_total', help: 'Completed ATLS handshakes', labelNames: ['transport'], registers: [this.registry] });
  readonly failures = new Counter({ name: 'atls_failures_total', help: 'Failed requests and handshakes by AtlsError code', labelNames: ['transport', 'code'], registers: [this.registry] });
  readonly limits = new Counter({ name: 'atls_limit_hits_total', help: 'Limits hit, by limit', labelNames: ['transport', 'limit'], registers: [this.registry] });
  readonly evictions = new Counter({ name: 'atls_evictions_total', help: 'State dropped to make room or on expiry', labelNames: ['transport', 'what', 'reason'], registers: [this.registry] });
  readonly timeouts = new Counter({ name: 'atls_timeouts_total', help: 'Clients that took too long', labelNames: ['transport', 'what'], registers: [this.registry] });
  readonly addressChecks = new Counter({
    name: 'atls_address_checks_total',
    help: 'ClientHellos from unverified addresses answered 4.01 + Echo instead of the flight (RFC 9175 amplification limit)',
    labelNames: ['transport'],
    registers: [this.registry],
  });
  /** draft §6.2: sessions whose client reported an intercepted transport, by the issuer it was shown (at most 100 issuers, then `(other)`). */
  readonly intercepted = new Counter({
    name: 'atls_intercepted_sessions_total',
    help: 'Sessions whose client saw its transport TLS intercepted, by the issuer of the certificate it was shown',
    labelNames: ['transport', 'issuer'],
    registers: [this.registry],
  });
  private readonly issuers = new Set<string>();

  /** One intercepted session; the issuer label is bounded so that reports cannot grow the registry. */
  interception(transport: string, issuer: string | undefined): void {
    let label = (issuer ?? '(no certificate)').replace(/\n/g, ', ');
    if (!this.issuers.has(label)) {
      if (this.issuers.size >= 100) label = '(other)';
      else this.issuers.add(label);
    }
    this.intercepted.inc({ transport, issuer: label });
  }
  readonly latency = new Histogram({
    name: 'atls_request_duration_seconds',
    help: 'Time to answer one outer request on an ATLS endpoint',
    labelNames: ['transport'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  private readonly sources: Array<() => { transport: string; sessions?: number | undefined; halfOpen?: number | undefined }> = [];

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    const sources = this.sources;
    new Gauge({
      name: 'atls_sessions',
      help: 'Sessions held now, by state (half_open, total)',
      labelNames: ['transport', 'state'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const read of sources) {
          const s = read();
          if (s.sessions !== undefined) this.set({ transport: s.transport, state: 'total' }, s.sessions);
          if (s.halfOpen !== undefined) this.set({ transport: s.transport, state: 'half_open' }, s.halfOpen);
        }
      },
    });
  }

  /** Adds a source of the session gauges. */
  watch(read: () => { transport: string; sessions?: number | undefined; halfOpen?: number | undefined }): void {
    this.sources.push(read);
  }
}

/** Logs and metrics of one command; `close()` stops the metrics endpoint. */
export class Observer {
  private server: Server | undefined;
  /** `http://host:port/metrics` when the endpoint runs. */
  metricsUrl: string | undefined;

  constructor(
    readonly log: EventLog,
    readonly metrics: Metrics | undefined,
  ) {}

  /** Serves `/metrics` on HOST:PORT. */
  async serveMetrics(listen: string): Promise<void> {
    const metrics = this.metrics;
    if (!metrics) return;
    const served = await serveMetricsText(listen, () => metrics.registry.metrics(), metrics.registry.contentType);
    this.metricsUrl = served.url;
    this.server = served.server;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** The limit, eviction, refusal and timeout events every transport shares. */
  private limitEvent(transport: string, e: { type: string; limit?: string; what?: string; peer: string; reason?: string }): void {
    switch (e.type) {
      case 'limit':
        this.metrics?.limits.inc({ transport, limit: e.limit });
        this.log.log('warn', 'limit.hit', { transport, limit: e.limit, peer: e.peer }, `limit|${transport}|${e.limit}|${e.peer}`);
        return;
      case 'evicted':
        this.metrics?.evictions.inc({ transport, what: e.what, reason: e.reason });
        this.log.log('info', `${e.what}.evicted`, { transport, peer: e.peer, reason: e.reason }, `evicted|${transport}|${e.what}|${e.peer}`);
        return;
      case 'refused':
        this.log.log('warn', `${e.what}.refused`, { transport, peer: e.peer, reason: e.reason }, `refused|${transport}|${e.what}|${e.peer}`);
        return;
      case 'timeout':
        this.metrics?.timeouts.inc({ transport, what: e.what });
        this.log.log('info', `${e.what}.timeout`, { transport, peer: e.peer }, `timeout|${transport}|${e.peer}`);
        return;
    }
  }

  /** The sink for an HTTP handler's (and its server's) events. */
  http(transport = 'http'): (e: AtlsServerEvent) => void {
    return (e) => {
      switch (e.type) {
        case 'session':
          // A flood of fresh ClientHellos repeats it; it folds per peer group as failures do.
          this.log.log('info', 'session.created', { transport, session: logId(e.sessionId), peer: e.address }, `created|${transport}|${peerGroup(e.address)}`);
          return;
        case 'handshake':
          this.metrics?.handshakes.inc({ transport });
          this.log.log('info', 'session.established', {
            transport,
            session: logId(e.peer.sessionId),
            peer: e.address,
            version: e.peer.version,
            suite: e.peer.cipherSuite,
            resumed: e.peer.resumed,
          });
          return;
        case 'error':
          this.metrics?.failures.inc({ transport, code: e.error.code });
          this.log.log(e.status >= 500 ? 'warn' : 'info', 'session.failed', {
            transport,
            session: logId(e.sessionId),
            peer: e.address,
            code: e.error.code,
            status: e.status,
            alert: e.error.alert?.name,
          }, `failed|${transport}|${e.error.code}|${e.status}|${peerGroup(e.address)}`);
          return;
        case 'end':
          // Evictions are counted from the core's `evicted` event, which names the peer and the limit.
          if (e.reason === 'expired') this.metrics?.timeouts.inc({ transport, what: 'session' });
          // Evictions repeat with a flood; the `*.evicted` line names the peer, and these fold to one a second.
          this.log.log('info', 'session.ended', { transport, session: logId(e.sessionId), reason: e.reason }, e.reason === 'evicted' ? `ended|${transport}|evicted` : undefined);
          return;
        case 'reply':
          this.metrics?.latency.observe({ transport }, e.ms / 1000);
          return;
        case 'request':
          this.log.log('debug', 'request', { transport, session: logId(e.peer.sessionId), method: e.method, status: e.status });
          return;
        case 'app-error':
          this.log.log('error', 'app.error', { transport, session: logId(e.peer.sessionId), error: e.error instanceof Error ? e.error.name : 'error' });
          return;
        case 'flight':
          this.log.log('debug', 'flight', { transport, session: logId(e.sessionId), received: e.received, sent: e.sent, state: e.state });
          return;
        case 'transport':
          // The client's view of the outer TLS (draft §6.2): an intercepting middlebox is worth a warning.
          this.log.log(e.report.intercepted ? 'warn' : 'debug', 'transport.report', {
            transport,
            session: logId(e.peer.sessionId),
            intercepted: e.report.intercepted,
            verified: e.report.verified,
            issuer: e.report.issuer?.replace(/\n/g, ', '),
          });
          if (e.report.intercepted) this.metrics?.interception(transport, e.report.issuer);
          return;
        default:
          this.limitEvent(transport, e);
      }
    };
  }

  /** The sink for a CoAP server's events. */
  coap(transport = 'coap'): (e: AtlsCoapServerEvent) => void {
    return (e) => {
      const ev = e as AtlsCoapServerEvent & { type: string };
      switch (ev.type) {
        case 'session': {
          const s = ev as Extract<AtlsCoapServerEvent, { type: 'session' }>;
          this.log.log('info', 'session.created', { transport, session: logId(s.sessionId), peer: s.peer.address, port: s.peer.port }, `created|${transport}|${peerGroup(s.peer.address)}`);
          return;
        }
        case 'established': {
          const s = ev as Extract<AtlsCoapServerEvent, { type: 'established' }>;
          this.metrics?.handshakes.inc({ transport });
          this.log.log('info', 'session.established', { transport, session: logId(s.sessionId), version: s.info.version, suite: s.info.cipherSuite });
          return;
        }
        case 'error': {
          const s = ev as Extract<AtlsCoapServerEvent, { type: 'error' }>;
          const code = s.error instanceof AtlsError ? s.error.code : 'INTERNAL';
          const peer = (s as { peer?: { address: string } }).peer?.address;
          this.metrics?.failures.inc({ transport, code });
          this.log.log('info', 'session.failed', { transport, session: logId(s.sessionId), peer, code, coap: s.code }, `failed|${transport}|${code}|${s.code}|${peerGroup(peer)}`);
          return;
        }
        case 'closed': {
          const s = ev as Extract<AtlsCoapServerEvent, { type: 'closed' }>;
          if (s.reason === 'expired') this.metrics?.timeouts.inc({ transport, what: 'session' });
          this.log.log('info', 'session.ended', { transport, session: logId(s.sessionId), reason: s.reason }, s.reason === 'evicted' ? `ended|${transport}|evicted` : undefined);
          return;
        }
        case 'address-check': {
          const s = ev as Extract<AtlsCoapServerEvent, { type: 'address-check' }>;
          this.metrics?.addressChecks.inc({ transport });
          this.log.log('debug', 'address.check', { transport, peer: s.peer }, `address|${transport}|${s.peer}`);
          return;
        }
        case 'request': {
          const s = ev as Extract<AtlsCoapServerEvent, { type: 'request' }>;
          this.log.log('debug', 'request', { transport, session: logId(s.sessionId), method: s.method, code: s.code });
          return;
        }
        default:
          if ('peer' in ev && typeof (ev as { peer: unknown }).peer === 'string') this.limitEvent(transport, ev as unknown as { type: string; peer: string });
      }
    };
  }

  /** The sink for the gateway's forwarding events (sizes and formats only: the bodies are opaque). */
  gateway(): (e: GatewayEvent) => void {
    return (e) => {
      if (e.direction === 'to-device' && (e.status ?? 200) >= 400) this.metrics?.failures.inc({ transport: 'gateway', code: String(e.status) });
      this.log.log('info', `gateway.${e.direction}`, {
        session: logId(e.sessionId),
        format: e.mediaType,
        bytes: e.bytes,
        status: e.status,
        coap: e.coapCode,
      });
    };
  }

  /** The sink for the forward proxy's ATLS client. */
  client(): (e: AtlsClientEvent) => void {
    return (e) => {
      if (e.type === 'handshake') {
        this.metrics?.handshakes.inc({ transport: 'proxy' });
        this.log.log('info', 'session.established', { transport: 'proxy', origin: e.origin, version: e.info.version, suite: e.info.cipherSuite, ms: Math.round(e.durationMs) });
      } else if (e.type === 'session-lost') {
        this.metrics?.failures.inc({ transport: 'proxy', code: `HTTP_${e.status}` });
        this.log.log('info', 'session.lost', { transport: 'proxy', origin: e.origin, status: e.status });
      } else if (e.type === 'flight' && e.direction === 'received') {
        this.log.log('debug', 'flight', { transport: 'proxy', origin: e.origin, kind: e.kind, bytes: e.bytes.length, status: e.status });
      }
    };
  }
}

/**
 * Connections the metrics endpoint holds at once (a scraper keeps one or two): at the cap the longest-idle
 * one is closed. Without a cap, idle connections to it would take the process's file descriptors from the
 * service itself, whose own cap counts only its own connections.
 */
export const METRICS_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({ maxConnections: 64, maxConnectionsPerPeer: 16 });

/** An HTTP server answering `GET /metrics` with `collect()`; anything else is 404. */
async function serveMetricsText(listen: string, collect: () => Promise<string>, contentType: string): Promise<{ url: string; server: Server }> {
  const { host, port } = parseHostPort(listen, '--metrics');
  const server = createServer(httpServerTimeouts(METRICS_CONNECTION_LIMITS), (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    void collect().then(
      (text) => res.writeHead(200, { 'content-type': contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  limitConnections(server, METRICS_CONNECTION_LIMITS);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return { url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/metrics`, server };
}

/**
 * `--workers N --metrics HOST:PORT`: the primary alone listens, and each scrape asks
 * every worker for its registry and sums them (prom-client's cluster aggregation).
 * Workers must not listen themselves: node:cluster would share the port among them
 * and each scrape would see one worker's figures.
 */
export async function serveWorkersMetrics(listen: string): Promise<{ url: string; close: () => Promise<void> }> {
  const aggregator = new AggregatorRegistry();
  const { url, server } = await serveMetricsText(listen, () => aggregator.clusterMetrics(), aggregator.contentType);
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The observer named by `--log-format`, `--log-level` and `--metrics`. Alone, the
 * metrics endpoint is started; in a worker of `--workers`, the registry is only
 * offered to the primary's endpoint (serveWorkersMetrics).
 */
export async function observerFrom(opts: Record<string, unknown>, role: 'alone' | 'worker' = 'alone'): Promise<Observer> {
  const format = (opts.logFormat as LogFormat | undefined) ?? 'text';
  const level = (opts.logLevel as LogLevel | undefined) ?? 'info';
  const metrics = typeof opts.metrics === 'string' ? new Metrics() : undefined;
  const observer = new Observer(new EventLog(format, level), metrics);
  if (metrics && role === 'worker') {
    AggregatorRegistry.setRegistries([metrics.registry]);
    new AggregatorRegistry(); // installs the worker's answer to the primary's requests
  } else if (typeof opts.metrics === 'string') {
    await observer.serveMetrics(opts.metrics);
  }
  return observer;
}
