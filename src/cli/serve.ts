/**
 * `atls serve`: an ATLS endpoint over HTTP (and CoAP with `--coap`), in front
 * of an upstream HTTP service (`--upstream`, a reverse sidecar) or an echo.
 */
import type { AddressInfo } from 'node:net';
import { AtlsError } from '../errors.js';
import type { TlsServerConfig } from '../engines/types.js';
import { createAtlsServer, echoApp, echoRawApp, upstreamApp, type ConnectionLimits } from '../http/index.js';
import { observerFrom } from './observe.js';
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
  untilSignal,
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
function connectionLimitsFrom(opts: Record<string, unknown>): ConnectionLimits {
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

export async function runServe(opts: Record<string, unknown>): Promise<void> {
  const { host, port } = parseHostPort(opts.listen as string);
  if (!opts.echo && opts.upstream === undefined) {
    throw new AtlsError('INVALID_ARGUMENT', 'give --upstream URL (reverse sidecar) or --echo');
  }
  const upstream = opts.upstream === undefined ? undefined : httpUrlFrom(opts.upstream as string, '--upstream');
  const app = upstream === undefined ? echoApp : upstreamApp(upstream);
  const tls = serverTlsFrom(opts);
  const mode = modeFrom(opts);
  const engine = engineFrom(opts);
  const fallback = opts.demoPage ? await demoPage(opts) : undefined;
  const sessionLimits = sessionLimitsFrom(opts);
  const trustedProxies = (opts.trustedProxy as string[] | undefined) ?? [];
  const observer = await observerFrom(opts);
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
  });
  observer.metrics?.watch(() => ({ transport: 'http', ...server.atls.stats() }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const shownHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  const closers: Array<() => Promise<void>> = [
    () => new Promise<void>((resolve) => server.close(() => resolve())),
    () => observer.close(),
  ];
  let coapLine = '';
  if (typeof opts.coap === 'string') {
    const { startCoapService } = await import('./coap-serve.js');
    const coap = await startCoapService({
      listen: opts.coap,
      tls,
      mode,
      echo: opts.echo === true,
      upstream,
      ...engine,
      limits: sessionLimits,
      onEvent: observer.coap(),
    });
    observer.metrics?.watch(() => ({ transport: 'coap', sessions: coap.sessions() }));
    closers.push(coap.close);
    coapLine = ` and ${coap.url}`;
  }
  process.stdout.write(
    `atls: serving ATLS at http://${shownHost}:${bound.port}/.well-known/atls${coapLine} ` +
      `(mode ${mode}, ${opts.echo ? 'echo' : `upstream ${String(upstream)}`})` +
      `${fallback ? `; demo page at http://${shownHost}:${bound.port}/` : ''}` +
      `${observer.metricsUrl ? `, metrics at ${observer.metricsUrl}` : ''}\n`,
  );
  await untilSignal();
  server.closeAllConnections();
  await Promise.all(closers.map((c) => c()));
}
