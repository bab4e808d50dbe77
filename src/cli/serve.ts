/**
 * `atls serve`: an ATLS endpoint over HTTP (and CoAP with `--coap`), in front
 * of an upstream HTTP service (`--upstream`, a reverse sidecar) or an echo.
 */
import type { AddressInfo } from 'node:net';
import { AtlsError } from '../errors.js';
import type { TlsServerConfig } from '../engines/types.js';
import { createAtlsServer, echoApp, echoRawApp, upstreamApp, type AtlsHandler, type ConnectionLimits } from '../http/index.js';
import { MAX_ID_OWNERS, type IdOwner, type SessionStateStore } from '../store/index.js';
import { readKeyFile } from '../store/key-wrap.js';
import { parseRedisUrl } from '../store/redis-url.js';
import { observerFrom } from './observe.js';
import type { CliIo } from './io.js';
import {
  cipherFlags,
  engineFrom,
  httpUrlFrom,
  modeFrom,
  parseHostPort,
  parseSize,
  positiveFlag,
  pskFrom,
  readPem,
  untilStopped,
  versionRange,
} from './options.js';

/** The server-side TLS configuration named by the flags of `serve`. */
export function serverTlsFrom(opts: Record<string, unknown>): TlsServerConfig {
  const psk = pskFrom(opts);
  if (!psk && (opts.cert === undefined || opts.key === undefined)) {
    throw new AtlsError('INVALID_ARGUMENT', 'give --cert and --key (or --psk-identity and --psk)');
  }
  if (opts.requireClientCert && opts.ca === undefined) {
    throw new AtlsError('INVALID_ARGUMENT', '--require-client-cert needs --ca to verify client certificates');
  }
  return {
    ...versionRange(opts.tlsVersion),
    ...(opts.cert !== undefined ? { cert: readPem(opts.cert as string, '--cert') } : {}),
    ...(opts.key !== undefined ? { key: readPem(opts.key as string, '--key') } : {}),
    ...(opts.ca !== undefined ? { ca: readPem(opts.ca as string, '--ca'), requestClientCert: true } : {}),
    ...(opts.requireClientCert ? { requireClientCert: true } : {}),
    // Every process given the same file resumes every other's tickets (RFC 5077 §4: the server's own key).
    ...(opts.ticketKeys !== undefined ? { ticketKeys: readKeyFile(opts.ticketKeys as string, 48, '--ticket-keys') } : {}),
    ...(psk ? { pskLookup: (id: string) => (id === psk.identity ? psk.key : undefined) } : {}),
    ...cipherFlags(opts, psk !== undefined),
  };
}

/** The demo page's handler; it trusts --demo-ca, else the last certificate of --cert (pinned). */
async function demoPage(opts: Record<string, unknown>): Promise<(request: Request) => Promise<Response>> {
  const { demoPageHandler } = await import('./demo-page.js');
  let trust: string;
  if (typeof opts.demoCa === 'string') {
    trust = readPem(opts.demoCa, '--demo-ca');
  } else if (typeof opts.cert === 'string') {
    const chain = readPem(opts.cert, '--cert').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
    if (!chain) throw new AtlsError('INVALID_ARGUMENT', '--cert holds no PEM certificate');
    trust = `${chain[chain.length - 1]!}\n`;
  } else {
    throw new AtlsError('INVALID_ARGUMENT', '--demo-page needs --cert or --demo-ca (the page has no PSK to offer)');
  }
  return demoPageHandler(trust);
}

/** Accept queue of the HTTP listener (connections the kernel completed that the server has not taken yet). */
const LISTEN_BACKLOG = 4096;

/** The session limits named by the flags of `serve` (shared by HTTP and CoAP). */
function sessionLimitsFrom(opts: Record<string, unknown>): { maxSessions?: number; maxHalfOpen?: number; handshakeTtlMs?: number; sessionTtlMs?: number } {
  const seconds = (v: unknown, flag: string): number | undefined => {
    const s = positiveFlag(v, flag);
    return s === undefined ? undefined : Math.round(s * 1000);
  };
  const out = {
    maxSessions: positiveFlag(opts.maxSessions, '--max-sessions', true),
    maxHalfOpen: positiveFlag(opts.maxHalfOpen, '--max-half-open', true),
    handshakeTtlMs: seconds(opts.handshakeTimeout, '--handshake-timeout'),
    sessionTtlMs: seconds(opts.sessionTtl, '--session-ttl'),
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

/** The HTTP connection limits named by the flags of `serve`. */
export function connectionLimitsFrom(opts: Record<string, unknown>): ConnectionLimits {
  const ms = (v: unknown, flag: string): number | undefined => {
    const s = positiveFlag(v, flag);
    return s === undefined ? undefined : Math.max(1, Math.round(s * 1000));
  };
  const out: ConnectionLimits = {
    maxConnections: positiveFlag(opts.maxConnections, '--max-connections', true),
    maxConnectionsPerPeer: positiveFlag(opts.maxConnectionsPerPeer, '--max-connections-per-peer', true),
    headersTimeoutMs: ms(opts.headersTimeout, '--headers-timeout'),
    requestTimeoutMs: ms(opts.requestTimeout, '--request-timeout'),
    keepAliveTimeoutMs: ms(opts.keepAliveTimeout, '--keep-alive-timeout'),
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

/** What `--store` names: the in-process default or a Redis database shared by every process. */
export type StoreChoice = { kind: 'memory' } | { kind: 'redis'; url: string };

/** `--store memory|redis://...` and `--store-key FILE` (only meaningful with Redis). */
export function storeChoiceFrom(opts: Record<string, unknown>): StoreChoice {
  const given = opts.store as string | undefined;
  if (given === undefined || given === 'memory') {
    if (opts.storeKey !== undefined) throw new AtlsError('INVALID_ARGUMENT', '--store-key wraps records in a shared store: give --store redis://...');
    return { kind: 'memory' };
  }
  parseRedisUrl(given); // refuses anything but redis://HOST[:PORT][/DB] with a one-line reason
  return { kind: 'redis', url: given };
}

/** `--workers N`: 1..64 processes (64: the ids' first character names the owner). */
export function workersFrom(opts: Record<string, unknown>): number {
  if (opts.workers === undefined) return 1;
  const n = Number(opts.workers);
  if (!/^\d+$/.test(String(opts.workers)) || n < 1 || n > MAX_ID_OWNERS) {
    throw new AtlsError('INVALID_ARGUMENT', `--workers wants a number of processes, 1..${MAX_ID_OWNERS}`);
  }
  return n;
}

/** A Redis URL with any password replaced, for the start-up line. */
function shownStore(choice: StoreChoice): string {
  return choice.kind === 'memory' ? 'memory' : choice.url.replace(/\/\/[^@/]*@/, '//***@');
}

/** What a worker of `--workers` adds to a service; a single process needs none of it. */
export interface ServiceExtras {
  /** The session state store (a worker: the primary's over IPC); default from `--store`. */
  store?: SessionStateStore;
  /** Mint session ids that name this process among its siblings. */
  idOwner?: IdOwner;
  /** Wraps the handler the HTTP server runs (flight relaying between workers). */
  wrap?: (handler: AtlsHandler) => AtlsHandler;
  /** Also serve `--coap` here (default true; only one worker binds it). */
  coap?: boolean;
  /** TLS ticket keys when no `--ticket-keys` file is given (workers share the primary's). */
  ticketKeys?: Uint8Array;
  /** `--metrics` is served by the primary, which sums the workers' registries. */
  metricsByPrimary?: boolean;
}

/** A running `atls serve` process (or worker). */
export interface Service {
  /** The start-up line (without the newline). */
  line: string;
  /** The ATLS handler (unwrapped): a worker serves relayed flights with it. */
  handler: AtlsHandler;
  close(): Promise<void>;
}

/** Starts the HTTP (and CoAP) endpoints of `atls serve` in this process. */
export async function startService(opts: Record<string, unknown>, extras: ServiceExtras = {}): Promise<Service> {
  const { host, port } = parseHostPort(opts.listen as string);
  if (!opts.echo && opts.upstream === undefined) {
    throw new AtlsError('INVALID_ARGUMENT', 'give --upstream URL (reverse sidecar) or --echo');
  }
  const upstream = opts.upstream === undefined ? undefined : httpUrlFrom(opts.upstream as string, '--upstream');
  const app = upstream === undefined ? echoApp : upstreamApp(upstream);
  const tls = { ...(extras.ticketKeys ? { ticketKeys: extras.ticketKeys } : {}), ...serverTlsFrom(opts) };
  const mode = modeFrom(opts);
  const engine = engineFrom(opts);
  const fallback = opts.demoPage ? await demoPage(opts) : undefined;
  const sessionLimits = sessionLimitsFrom(opts);
  const trustedProxies = (opts.trustedProxy as string[] | undefined) ?? [];
  const observer = await observerFrom(opts, extras.metricsByPrimary ? 'worker' : 'alone');
  const choice = storeChoiceFrom(opts);
  const closers: Array<() => Promise<void>> = [];
  let store = extras.store;
  if (!store && choice.kind === 'redis') {
    const { RedisStateStore } = await import('../store/redis.js');
    const { StoreKey } = await import('../store/key-wrap.js');
    const redis = new RedisStateStore({ url: choice.url, ...(opts.storeKey !== undefined ? { storeKey: StoreKey.fromFile(opts.storeKey as string) } : {}) });
    if (!(await redis.ready(3000))) {
      // Not fatal: requests get 503 + Retry-After until Redis answers, and the client retries.
      process.stderr.write(`atls: redis at ${shownStore(choice)} does not answer yet; serving 503 until it does\n`);
    }
    store = redis;
    closers.push(() => redis.close());
  }
  const server = createAtlsServer({
    ...(fallback ? { fallback } : {}),
    tls,
    app,
    // The echo needs no fetch objects: the raw app skips them (about 1 ms per request on Node 20).
    ...(opts.echo ? { rawApp: echoRawApp } : {}),
    mode,
    ...engine,
    ...(typeof opts.routingTag === 'string' ? { routingTag: opts.routingTag } : {}),
    limits: {
      ...(typeof opts.maxBody === 'string' ? { maxBodyBytes: parseSize(opts.maxBody, '--max-body') } : {}),
      ...(sessionLimits.maxSessions !== undefined ? { maxSessions: sessionLimits.maxSessions } : {}),
      ...(sessionLimits.maxHalfOpen !== undefined ? { maxHalfOpen: sessionLimits.maxHalfOpen } : {}),
      ...(sessionLimits.handshakeTtlMs !== undefined ? { handshakeTtlMs: sessionLimits.handshakeTtlMs } : {}),
    },
    ...(sessionLimits.sessionTtlMs !== undefined ? { ttl: sessionLimits.sessionTtlMs } : {}),
    connections: connectionLimitsFrom(opts),
    trustedProxies,
    onEvent: observer.http(),
    ...(store ? { store } : {}),
    ...(extras.idOwner ? { idOwner: extras.idOwner } : {}),
    ...(extras.wrap ? { wrapHandler: extras.wrap } : {}),
  });
  observer.metrics?.watch(() => ({ transport: 'http', ...server.atls.stats() }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A connection flood fills Node's default accept queue (511) within a quarter second; honest SYNs
    // are then dropped and retried seconds later. The kernel caps this at net.core.somaxconn.
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const shownHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  // First the listeners (closing the server also closes the handler and its sessions), the store last.
  closers.unshift(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
    () => observer.close(),
  );
  let coapLine = '';
  if (typeof opts.coap === 'string' && extras.coap !== false) {
    const { startCoapService } = await import('./coap-serve.js');
    const { echoKeyFrom } = await import('../coap/echo.js');
    const coap = await startCoapService({
      listen: opts.coap,
      tls,
      mode,
      echo: opts.echo === true,
      upstream,
      ...engine,
      limits: sessionLimits,
      onEvent: observer.coap(),
      ...(store ? { store } : {}),
      addressCheck: opts.addressCheck !== 'off',
      // Derived from the ticket keys (the --ticket-keys file, or the ones the primary hands every
      // worker): a process that takes over verifies the Echo values its predecessor issued.
      ...(tls.ticketKeys ? { echoKey: echoKeyFrom(tls.ticketKeys) } : {}),
    });
    observer.metrics?.watch(() => ({ transport: 'coap', sessions: coap.sessions() }));
    closers.splice(2, 0, coap.close);
    coapLine = ` and ${coap.url}`;
  }
  const line =
    `atls: serving ATLS at http://${shownHost}:${bound.port}/.well-known/atls${coapLine} ` +
    `(mode ${mode}, ${opts.echo ? 'echo' : `upstream ${String(upstream)}`}, store ${shownStore(choice)})` +
    `${fallback ? `; demo page at http://${shownHost}:${bound.port}/` : ''}` +
    `${observer.metricsUrl ? `, metrics at ${observer.metricsUrl}` : ''}`;
  return {
    line,
    handler: server.atls,
    close: async () => {
      for (const c of closers) await c();
    },
  };
}

export async function runServe(opts: Record<string, unknown>, io: CliIo): Promise<void> {
  const workers = workersFrom(opts);
  if (workers > 1) {
    const { runWorkers } = await import('./workers.js');
    return runWorkers(opts, workers);
  }
  const service = await startService(opts);
  io.stdout.write(`${service.line}\n`);
  await untilStopped(io);
  await service.close();
}
