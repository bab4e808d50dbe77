/**
 * Shared set-up of the HTTP binding tests: TLS configurations for both ends,
 * a handler + client pair joined without sockets, and raw POST helpers for
 * the bad-input tests.
 */
import http from 'node:http';
import type { TlsClientConfig, TlsServerConfig } from '../../src/engines/types.js';
import { AtlsClientSession } from '../../src/session/session.js';
import type { Mode } from '../../src/session/types.js';
import { createAtlsHandler, type AtlsApp, type AtlsHandler, type AtlsHandlerOptions } from '../../src/http/server.js';
import { MemoryStateStore, type CommitResult, type ReserveResult, type SessionState, type SessionStateStore, type StoredSession, type UsageCounters } from '../../src/store/index.js';
import { createAtlsClient, type AtlsClient, type AtlsClientEvent, type AtlsClientOptions } from '../../src/http/client.js';
import { COOKIE_NAME, MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';
import { requestToBhttp } from '../../src/bhttp/web.js';
import { readCookie } from '../../src/http/cookie.js';
import type { TestPki } from './pki.js';

/**
 * A session state store the tests can empty at will (a restart, an
 * eviction), answering only asynchronously: it exercises the path a shared
 * store (Redis) takes through the endpoint core.
 */
export class ForgetfulStore implements SessionStateStore {
  private inner = new MemoryStateStore({ sweepIntervalMs: 0 });
  async create(state: SessionState, ttlMs: number): Promise<boolean> {
    return this.inner.create(state, ttlMs);
  }
  async load(id: string): Promise<StoredSession | undefined> {
    return this.inner.load(id);
  }
  async commit(id: string, seq: number, ttlMs: number): Promise<CommitResult> {
    return this.inner.commit(id, seq, ttlMs);
  }
  async charge(id: string, units: { sent?: number; failed?: number }): Promise<UsageCounters | undefined> {
    return this.inner.charge(id, units);
  }
  async reserve(id: string, count: number, ttlMs: number): Promise<ReserveResult | undefined> {
    return this.inner.reserve(id, count, ttlMs);
  }
  async snapshot(id: string): Promise<SessionState | undefined> {
    return this.inner.snapshot(id);
  }
  async delete(id: string): Promise<boolean> {
    return this.inner.delete(id);
  }
  async close(): Promise<void> {
    await this.inner.close();
  }
  /** Forget every session, as a restarted server would. */
  forgetAll(): void {
    void this.inner.close();
    this.inner = new MemoryStateStore({ sweepIntervalMs: 0 });
  }
}

/** The external PSK the PSK tests share. */
export const TEST_PSK = { identity: 'device-17', key: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex') };

/** How a test authenticates. */
export type HttpAuth = 'cert' | 'mutual' | 'psk';

/** TLS settings of both ends for a version and an authentication. */
export function tlsPair(
  pki: TestPki,
  version: 'TLSv1.2' | 'TLSv1.3',
  auth: HttpAuth,
): { server: TlsServerConfig; client: TlsClientConfig } {
  const v = { minVersion: version, maxVersion: version } as const;
  if (auth === 'psk') {
    const ciphers = version === 'TLSv1.3' ? 'TLS_AES_128_GCM_SHA256' : 'ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256';
    return {
      server: { ...v, ciphers, pskLookup: (id) => (id === TEST_PSK.identity ? TEST_PSK.key : undefined) },
      client: { ...v, ciphers, psk: TEST_PSK, serverName: 'localhost' },
    };
  }
  const mutual = auth === 'mutual';
  return {
    server: {
      ...v,
      cert: pki.server.cert,
      key: pki.server.key,
      ...(mutual ? { ca: pki.ca.cert, requireClientCert: true } : {}),
    },
    client: {
      ...v,
      ca: pki.ca.cert,
      serverName: 'localhost',
      ...(mutual ? { cert: pki.client.cert, key: pki.client.key } : {}),
    },
  };
}

/** An inner app that reports what it saw: method, path, body, peer. */
export const reportApp: AtlsApp = async (req, peer) =>
  Response.json({
    method: req.method,
    path: new URL(req.url).pathname + new URL(req.url).search,
    body: req.method === 'GET' || req.method === 'HEAD' ? '' : await req.text(),
    contentType: req.headers.get('content-type'),
    subject: peer.subject ?? null,
    pskIdentity: peer.pskIdentity ?? null,
    version: peer.version,
    cipherSuite: peer.cipherSuite,
    mode: peer.mode,
  });

/** A handler and a client joined directly (no sockets), with the client's events recorded. */
export interface Pair {
  handler: AtlsHandler;
  client: AtlsClient;
  events: AtlsClientEvent[];
  /** Every outer request the handler saw, with its response status. */
  wire: Array<{ request: Request; response: Response }>;
}

/** Builds a {@link Pair}. `origin` is what the client fetches (default http://localhost). */
export function makePair(
  server: Partial<AtlsHandlerOptions> & { tls: TlsServerConfig },
  client: AtlsClientOptions,
): Pair {
  const handler = createAtlsHandler({ app: reportApp, ...server });
  const events: AtlsClientEvent[] = [];
  const wire: Pair['wire'] = [];
  const c = createAtlsClient({
    ...client,
    transport: {
      ...client.transport,
      fetch: async (request) => {
        const response = await handler(request.clone());
        wire.push({ request, response: response.clone() });
        return response;
      },
    },
    onEvent: (e) => {
      events.push(e);
      client.onEvent?.(e);
    },
  });
  return { handler, client: c, events, wire };
}

/** POSTs a raw body to the handler. */
export function post(
  handler: AtlsHandler,
  body: Uint8Array | string,
  opts: { type?: string; cookie?: string; path?: string; headers?: Record<string, string>; method?: string } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.type !== '') headers['content-type'] = opts.type ?? MEDIA_TYPE_FLIGHT;
  if (opts.cookie !== undefined) headers.cookie = `${COOKIE_NAME}=${opts.cookie}`;
  const method = opts.method ?? 'POST';
  return handler(
    new Request(`http://localhost${opts.path ?? '/.well-known/atls'}`, {
      method,
      headers,
      ...(method === 'GET' || method === 'HEAD' ? {} : { body }),
    }),
  );
}

/** The cookie value a response sets, if any. */
export function cookieOf(res: Response): string | undefined {
  for (const sc of res.headers.getSetCookie()) {
    const m = new RegExp(`^${COOKIE_NAME}=([^;]*)`).exec(sc);
    if (m) return m[1];
  }
  return undefined;
}

/** A manual handshake against a handler, exposing every step (for the bad-input matrix). */
export async function manualHandshake(
  handler: AtlsHandler,
  tls: TlsClientConfig,
  mode: Mode = 'exported',
): Promise<{ session: AtlsClientSession; cookie: string; flights: Uint8Array[] }> {
  const session = new AtlsClientSession({ tls, mode });
  let out = await session.start();
  let cookie: string | undefined;
  const flights: Uint8Array[] = [];
  for (let i = 0; i < 6 && (session.state !== 'established' || out.flight.length > 0); i++) {
    flights.push(out.flight);
    const res = await post(handler, out.flight, cookie ? { cookie } : {});
    if (res.status !== 200) throw new Error(`handshake step answered ${res.status}: ${await res.text()}`);
    cookie = cookieOf(res) ?? cookie;
    out = await session.receive(new Uint8Array(await res.arrayBuffer()));
  }
  if (!cookie) throw new Error('no cookie');
  return { session, cookie, flights };
}

/** One protected inner request as the client would send it. */
export async function protectedRequest(session: AtlsClientSession, url = 'http://localhost/x'): Promise<Uint8Array> {
  return session.protect(await requestToBhttp(new Request(url)));
}

export { MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED };

/** POSTs one flight over a real socket of `agent` (its `localAddress`); the answer's status, body and cookie. */
function postFlightOver(port: number, agent: http.Agent, flight: Uint8Array, cookie?: string): Promise<{ status: number; body: Uint8Array; cookie: string | undefined }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': MEDIA_TYPE_FLIGHT };
    if (cookie) headers.cookie = `${COOKIE_NAME}=${cookie}`;
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/.well-known/atls', agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const set = res.headers['set-cookie']?.[0];
        resolve({ status: res.statusCode ?? 0, body: new Uint8Array(Buffer.concat(chunks)), cookie: set ? readCookie(set.split(';')[0]!, COOKIE_NAME) : cookie });
      });
    });
    req.on('error', reject);
    req.end(flight);
  });
}

/**
 * One complete exported-mode handshake with a server on 127.0.0.1:`port`,
 * from `agent`'s address; the session is only held (never closed). For
 * tests of what many completed handshakes from one address do.
 */
export async function socketHandshake(port: number, agent: http.Agent, tls: TlsClientConfig): Promise<void> {
  const session = new AtlsClientSession({ tls });
  let out = await session.start();
  let cookie: string | undefined;
  for (let i = 0; i < 4 && session.state !== 'established'; i++) {
    const res = await postFlightOver(port, agent, out.flight, cookie);
    if (res.status !== 200) throw new Error(`handshake step answered ${res.status}`);
    cookie = res.cookie;
    out = await session.receive(res.body);
  }
  if (out.flight.length > 0) await postFlightOver(port, agent, out.flight, cookie);
  if (session.state !== 'established') throw new Error(`handshake ended in state ${session.state}`);
  session.destroy();
}
