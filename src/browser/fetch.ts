/**
 * `atlsFetch` for web pages: architecture (b) with Binary HTTP inner
 * messages, the page's own `fetch` as the transport and the browser's cookie
 * jar for the session cookie. One ATLS session per origin, handshake on
 * first use with the first request riding on the client's final flight; a
 * lost session (404/410) is re-established and idempotent requests resent.
 *
 * It shares the protocol code of the Node client (session, exported-key
 * protection, Binary HTTP conversion, media types and headers); what differs
 * is the transport: no proxies, no undici, no cookie parsing (the browser
 * stores `Set-Cookie` and sends `Cookie` itself; JavaScript cannot even read
 * them), and the `webcrypto` TLS engine.
 *
 * @example
 * ```ts
 * import { atlsFetch } from 'atls/browser';
 * const res = await atlsFetch('/api/hello', { atls: { tls: { ca: caPem, serverName: 'localhost' } } });
 * ```
 * @module
 */
import { bhttpToResponse, requestToBhttp } from '../bhttp/web.js';
import { concatBytes } from '../bytes.js';
import { webcryptoEngine } from '../engines/webcrypto/index.js';
import type { HandshakeInfo, TlsClientConfig } from '../engines/types.js';
import { AtlsError } from '../errors.js';
import { DEFAULT_ENDPOINT, HEADER_FLIGHT_LENGTH, MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED } from '../http/constants.js';
import { bodyKind, errorCodeFromHeader, isIdempotent, parseFlightLength } from '../http/wire.js';
import { AtlsClientSession } from '../session/session.js';

/** A handshake needing more round trips than this is refused (HRR makes 3). */
const MAX_HANDSHAKE_ROUND_TRIPS = 8;
/** Largest outer response body read (as the Node client's default). */
const MAX_RESPONSE = 32 * 1024 * 1024;

/** What the client reports, for logs and the demo page. */
export type BrowserAtlsEvent =
  | {
      type: 'flight';
      origin: string;
      direction: 'sent' | 'received';
      kind: 'flight' | 'protected' | 'flight+protected';
      bytes: Uint8Array;
      /** Bytes of TLS records at the start of `bytes`. */
      flightBytes: number;
      status?: number;
    }
  | { type: 'handshake'; origin: string; info: HandshakeInfo; roundTrips: number; durationMs: number }
  | { type: 'session-lost'; origin: string; status: number };

/** Options of {@link createAtlsFetch}. */
export interface BrowserAtlsOptions {
  /** ATLS trust: `ca` (PEM) of the service, or `psk`; `serverName` defaults to the URL's host. */
  tls: TlsClientConfig;
  /** Endpoint path on each origin (default `/.well-known/atls`). */
  endpoint?: string;
  /** The transport (default the page's `fetch`). */
  fetch?: typeof fetch;
  onEvent?: (event: BrowserAtlsEvent) => void;
}

class SessionLost extends Error {
  constructor(readonly status: number) {
    super(`ATLS session lost (HTTP ${status})`);
  }
}

interface Outer {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/** One origin's ATLS session (architecture b). */
class OriginSession {
  readonly session: AtlsClientSession;
  readonly ready: Promise<Uint8Array | undefined>;
  private roundTrips = 0;

  constructor(
    readonly origin: string,
    private readonly endpoint: URL,
    private readonly options: BrowserAtlsOptions,
    first: Uint8Array | undefined,
  ) {
    const serverName = options.tls.serverName ?? endpoint.hostname.replace(/^\[|\]$/g, '');
    this.session = new AtlsClientSession({ mode: 'exported', engine: webcryptoEngine, tls: { ...options.tls, serverName } });
    this.ready = this.handshake(first);
  }

  private emit(ev: BrowserAtlsEvent): void {
    try {
      this.options.onEvent?.(ev);
    } catch {
      // Logging hooks must not break requests.
    }
  }

  private async post(body: Uint8Array, kind: 'flight' | 'protected' | 'flight+protected', flightBytes: number): Promise<Outer> {
    const headers: Record<string, string> = {
      'content-type': kind === 'protected' ? MEDIA_TYPE_PROTECTED : MEDIA_TYPE_FLIGHT,
      accept: kind === 'protected' ? MEDIA_TYPE_PROTECTED : MEDIA_TYPE_FLIGHT,
    };
    if (kind === 'flight+protected') headers[HEADER_FLIGHT_LENGTH] = String(flightBytes);
    this.roundTrips++;
    this.emit({ type: 'flight', origin: this.origin, direction: 'sent', kind, bytes: body, flightBytes });
    const transport = this.options.fetch ?? globalThis.fetch;
    // The session cookie is the browser's to keep and send (credentials).
    const res = await transport(this.endpoint, { method: 'POST', body, headers, credentials: 'include' });
    const length = Number(res.headers.get('content-length') ?? 0);
    if (length > MAX_RESPONSE) throw new AtlsError('TOO_LARGE', `ATLS response of ${length} bytes`, { source: 'remote' });
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.length > MAX_RESPONSE) throw new AtlsError('TOO_LARGE', `ATLS response of ${bytes.length} bytes`, { source: 'remote' });
    const rkind = bodyKind(res.headers.get('content-type'));
    const split = res.headers.get(HEADER_FLIGHT_LENGTH);
    this.emit({
      type: 'flight',
      origin: this.origin,
      direction: 'received',
      kind: rkind === 'protected' ? 'protected' : split !== null ? 'flight+protected' : 'flight',
      bytes,
      flightBytes: rkind === 'flight' ? (split !== null ? Math.min(Number(split) || 0, bytes.length) : bytes.length) : 0,
      status: res.status,
    });
    return { status: res.status, headers: res.headers, body: bytes };
  }

  private failure(res: Outer): AtlsError {
    const code = errorCodeFromHeader(res.headers.get('atls-error')) ?? (res.status >= 500 ? 'INTERNAL' : 'HANDSHAKE_FAILED');
    return new AtlsError(code, `ATLS server ${this.endpoint.href} answered ${res.status}`, { source: 'remote' });
  }

  /** The handshake; with `first`, that request rides with the final flight and its answer is returned. */
  private async handshake(first: Uint8Array | undefined): Promise<Uint8Array | undefined> {
    const started = Date.now();
    let out = await this.session.start();
    let answer: Uint8Array | undefined;
    for (;;) {
      if (this.roundTrips >= MAX_HANDSHAKE_ROUND_TRIPS) {
        throw new AtlsError('HANDSHAKE_FAILED', `handshake did not finish in ${MAX_HANDSHAKE_ROUND_TRIPS} round trips`, { source: 'remote' });
      }
      const rider = this.session.state === 'confirming' ? first : undefined;
      const body = rider ? concatBytes([out.flight, this.session.protect(rider)]) : out.flight;
      const res = await this.post(body, rider ? 'flight+protected' : 'flight', out.flight.length);
      if (res.status !== 200) {
        const alerts = bodyKind(res.headers.get('content-type')) === 'flight' ? res.body : new Uint8Array(0);
        throw this.session.peerFailed(alerts, this.failure(res));
      }
      if (bodyKind(res.headers.get('content-type')) !== 'flight') {
        throw this.session.peerFailed(new Uint8Array(0), new AtlsError('MALFORMED_RECORD', 'ATLS server answered a flight without a flight', { source: 'remote' }));
      }
      let flight = res.body;
      let sealed: Uint8Array | undefined;
      if (rider) {
        const split = res.headers.get(HEADER_FLIGHT_LENGTH);
        if (split === null) {
          throw this.session.peerFailed(new Uint8Array(0), new AtlsError('MALFORMED_MESSAGE', 'the server did not answer the piggy-backed request', { source: 'remote' }));
        }
        const n = parseFlightLength(split, res.body.length);
        flight = res.body.subarray(0, n);
        sealed = res.body.subarray(n);
      }
      out = await this.session.receive(flight);
      const hs = out.events.find((e) => e.type === 'handshake');
      if (hs?.type === 'handshake') {
        this.emit({ type: 'handshake', origin: this.origin, info: hs.info, roundTrips: this.roundTrips, durationMs: Date.now() - started });
      }
      if (sealed) {
        answer = this.session.unprotect(sealed);
        first = undefined;
      }
      if (this.session.state === 'established' && out.flight.length === 0) return answer;
      if (this.session.state !== 'handshaking' && this.session.state !== 'confirming' && this.session.state !== 'established') {
        throw this.session.error ?? new AtlsError('CLOSED', 'the server closed the ATLS session during the handshake', { source: 'remote' });
      }
    }
  }

  /** One protected request over the established session. */
  async request(bhttp: Uint8Array): Promise<Uint8Array> {
    const res = await this.post(this.session.protect(bhttp), 'protected', 0);
    if (res.status === 404 || res.status === 410) throw new SessionLost(res.status);
    if (res.status !== 200) throw this.failure(res);
    if (bodyKind(res.headers.get('content-type')) !== 'protected') {
      throw new AtlsError('MALFORMED_MESSAGE', 'ATLS server answered without a protected message', { source: 'remote' });
    }
    return this.session.unprotect(res.body);
  }
}

/** A `fetch` through ATLS, with its sessions. */
export interface BrowserAtlsClient {
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Forget every session (exported mode: the keys; the server forgets by TTL). */
  close(): void;
}

/** Creates a `fetch` through ATLS for a web page. */
export function createAtlsFetch(options: BrowserAtlsOptions): BrowserAtlsClient {
  const sessions = new Map<string, OriginSession>();
  const endpointPath = options.endpoint ?? DEFAULT_ENDPOINT;
  if (!endpointPath.startsWith('/')) throw new AtlsError('INVALID_ARGUMENT', 'endpoint must be a path starting with "/"');

  async function fetchOnce(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const bhttp = await requestToBhttp(request);
    for (let attempt = 0; ; attempt++) {
      let os = sessions.get(url.origin);
      if (!os) {
        os = new OriginSession(url.origin, new URL(endpointPath, url.origin), options, bhttp);
        sessions.set(url.origin, os);
        const mine = os;
        try {
          const answer = await mine.ready;
          if (answer) return bhttpToResponse(answer);
        } catch (e) {
          if (sessions.get(url.origin) === mine) sessions.delete(url.origin);
          mine.session.destroy();
          throw e;
        }
      } else {
        await os.ready;
      }
      try {
        return bhttpToResponse(await os.request(bhttp));
      } catch (e) {
        if (!(e instanceof SessionLost)) throw e;
        if (sessions.get(url.origin) === os) sessions.delete(url.origin);
        os.session.destroy();
        options.onEvent?.({ type: 'session-lost', origin: url.origin, status: e.status });
        if (attempt > 0 || !isIdempotent(request.method)) {
          throw new AtlsError('CLOSED', `the ATLS session with ${url.origin} was lost (HTTP ${e.status})`, { source: 'remote' });
        }
      }
    }
  }

  return {
    fetch: async (input, init) => {
      // Relative URLs resolve against the page, as with fetch; bad input is fetch's own TypeError.
      const base = (globalThis as { location?: { href: string } }).location?.href;
      return fetchOnce(typeof input === 'string' && base ? new Request(new URL(input, base), init) : new Request(input, init));
    },
    close: () => {
      for (const os of sessions.values()) os.session.destroy();
      sessions.clear();
    },
  };
}

/** `RequestInit` plus the ATLS options. */
export interface BrowserAtlsRequestInit extends RequestInit {
  atls: BrowserAtlsOptions;
}

const clients = new WeakMap<BrowserAtlsOptions, BrowserAtlsClient>();

/**
 * `fetch` through ATLS, as `atlsFetch` of `atls/http`: calls passing the same
 * `atls` options object share one client and its sessions.
 */
export function atlsFetch(input: string | URL | Request, init: BrowserAtlsRequestInit): Promise<Response> {
  const { atls, ...rest } = init;
  let client = clients.get(atls);
  if (!client) clients.set(atls, (client = createAtlsFetch(atls)));
  return client.fetch(input, rest);
}
