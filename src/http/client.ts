/**
 * The client side of the HTTP binding: `fetch` through ATLS. Each origin gets
 * one ATLS session (handshake on first use, flights POSTed to the origin's
 * ATLS endpoint, session cookie kept), every request becomes one Binary HTTP
 * message protected end to end, and the answer comes back as a real
 * `Response`. A lost session (404/410) is re-established transparently;
 * only idempotent requests are then resent.
 *
 * @example
 * ```ts
 * const client = createAtlsClient({ tls: { ca: caPem }, transport: { insecure: true } });
 * const res = await client.fetch('https://service.example/api/items');
 * console.log(res.status, await res.json());
 * await client.close();
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { AtlsErrorCode } from '../errors.js';
import type { HandshakeInfo, TlsClientConfig, TlsEngine } from '../engines/types.js';
import { AtlsClientSession } from '../session/session.js';
import type { FlightResult, Mode, SessionOptions, SessionState } from '../session/types.js';
import { bhttpStreamToResponse, requestToBhttp, requestToBhttpStream } from '../bhttp/web.js';
import { INDETERMINATE_REQUEST, decodeResponse } from '../bhttp/codec.js';
import { protectBody, unprotectBody } from '../protect/stream.js';
import { wholeRecordsLength } from '../records.js';
import { concatBytes } from '../bytes.js';
import { readLimited } from '../streams.js';
import { MAX_REDIRECTS, followRedirect, isRedirectStatus, locationOf, networkError, withFinalUrl, type Hop } from './redirect.js';
import {
  COOKIE_NAME,
  DEFAULT_ENDPOINT,
  HEADER_ERROR,
  HEADER_FLIGHT_LENGTH,
  MEDIA_TYPE_FLIGHT,
  MEDIA_TYPE_PROTECTED,
} from './constants.js';
import { parseSetCookie } from './cookie.js';
import { HttpTransport, type AtlsTransportOptions, type TransportResponse } from './transport.js';
import { bodyKind, errorCodeFromHeader, isIdempotent, mediaType, parseFlightLength, readBody } from './wire.js';
import { parseRetryAfter, resolveUnavailableRetry, retryDelayMs, type UnavailableRetryOptions } from '../retry.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { observeTransport, transportReportFields, type TransportObservation } from './transport-report.js';

/** Largest outer response body the client reads (default 32 MiB). */
const DEFAULT_MAX_RESPONSE = 32 * 1024 * 1024;
/** Largest inner request that rides with the client's final flight. */
const MAX_PIGGYBACK_BYTES = 64 * 1024;
/**
 * Request bytes above this go as a stream, as a streamed body does: a server
 * takes a large body only as it arrives (one protected message, or a
 * flight, it holds whole).
 */
const MAX_WHOLE_REQUEST_BYTES = MAX_PIGGYBACK_BYTES;
/** A handshake that needs more round trips than this is refused (HRR makes 3). */
const MAX_HANDSHAKE_ROUND_TRIPS = 8;
/**
 * Protected requests of one session outstanding at once: the server's replay
 * window (64 by default, not announced) rejects as TOO_OLD a message sealed
 * 64 or more numbers before the highest one it accepted (docs/protocol.md §4).
 */
const MAX_OUTSTANDING = 64;
/**
 * An answer of at most this many bytes (by its content-length) is read whole
 * before it is opened, as before streaming: flight events then carry its
 * bytes. Longer or chunked answers are opened as they arrive.
 */
const WHOLE_ANSWER_MAX = 1024 * 1024;
/** Plaintext of a records-mode answer read ahead of the application, so a small answer frees the session unread. */
const RECORDS_READ_AHEAD = 1024 * 1024;
/** Origins whose latest TLS ticket a client keeps (one ticket each; the least recently used goes first). */
const MAX_TICKET_ORIGINS = 256;

/**
 * The ATLS layer's trust and identity: whom the service must prove to be, and
 * how this client proves itself. `serverName` defaults to the URL's host.
 */
export type AtlsClientTls = TlsClientConfig;

/** A flight or protected message on the wire, for `atls fetch -v` style logs. */
export interface AtlsFlightEvent {
  type: 'flight';
  origin: string;
  direction: 'sent' | 'received';
  /** `flight`: TLS records; `protected`: one protected message; `flight+protected`: piggy-backed. */
  kind: 'flight' | 'protected' | 'flight+protected';
  /** The whole body; empty when it streams (`streamed`). */
  bytes: Uint8Array;
  /** The body streams as it is produced or read: its bytes are not held, so `bytes` is empty. */
  streamed?: boolean;
  /** Bytes of TLS records at the start of `bytes` (all of them for `flight`, 0 for `protected`). */
  flightBytes: number;
  /** 1-based count of POSTs of this session so far. */
  roundTrip: number;
  /** Received only: the HTTP status. */
  status?: number;
  /** The endpoint URL the body was POSTed to. */
  url?: string;
  /** The outer HTTP headers: those this client set (undici adds host and content-length), or those received. */
  headers?: Headers;
}

/** Everything a client reports. Hooks must not throw (errors are swallowed). */
export type AtlsClientEvent =
  | AtlsFlightEvent
  | {
      type: 'handshake';
      origin: string;
      info: HandshakeInfo;
      /** POSTs the handshake took (the piggy-backed request included). */
      roundTrips: number;
      bytesSent: number;
      bytesReceived: number;
      durationMs: number;
      /** The first request rode with the final flight. */
      piggyBacked: boolean;
    }
  | { type: 'session-lost'; origin: string; status: number; resend: boolean }
  | {
      /**
       * Mode `records`: the answer to the request the server accepted as TLS 1.3
       * early data (`tls.earlyData`), as Binary HTTP. A 425 (Too Early) is sent
       * again once, after the handshake, not as early data (RFC 8470 §5.2): its
       * answer comes as a second event with `retried`.
       */
      type: 'early-data';
      origin: string;
      status: number;
      response: Uint8Array;
      retried: boolean;
    }
  | {
      /** Which way a request went under the policy (draft §6.2). */
      type: 'policy';
      origin: string;
      policy: AtlsPolicy;
      /** `atls`: through an ATLS session; `plain`: plain HTTP(S), no ATLS flight sent. */
      use: 'atls' | 'plain';
      /** The transport TLS as the client saw it (https origins, when it was checked). */
      transport: TransportObservation | undefined;
    };

/**
 * When to use ATLS (draft §6.2). `always` (default); `auto`: plain HTTPS when
 * the transport TLS verifies against the client's trust store for the
 * expected name (no interception), ATLS otherwise (`http:` included);
 * `never`: plain HTTP(S) only.
 */
export type AtlsPolicy = 'always' | 'auto' | 'never';

/** Options of {@link createAtlsClient}. */
export interface AtlsClientOptions {
  /** ATLS trust and identity (ca, cert/key, psk, serverName, versions). */
  tls?: AtlsClientTls;
  /** `exported` (architecture b, default) or `records` (architecture a). */
  mode?: Mode;
  /** Endpoint path on each origin (default `/.well-known/atls`; draft-00 servers: `/atls`). */
  endpoint?: string;
  /** The outer transport: its trust settings, never used for ATLS. */
  transport?: AtlsTransportOptions;
  /** Proxy for the transport: a URL, `false` for none; default HTTP_PROXY / HTTPS_PROXY / NO_PROXY. */
  proxy?: string | false;
  /** Environment for proxy variables (default `process.env`). */
  env?: Record<string, string | undefined>;
  engine?: TlsEngine;
  /** Further session options (flight cap, protection window). */
  session?: Omit<SessionOptions, 'engine' | 'mode'>;
  /** Let the first request ride with the client's final flight when it can (default true). */
  piggyback?: boolean;
  /** After a lost session, resend non-idempotent requests too (default false). */
  retryNonIdempotent?: boolean;
  /**
   * Resend a flight or protected message answered 503 with Retry-After
   * (seconds or HTTP-date) after that delay plus jitter: at most `retries`
   * times (default 3), and only when the delay is at most `maxWaitMs`
   * (default 5000). Only when resending is safe: a handshake flight, an
   * idempotent request, or a 503 `LIMIT_REACHED` (refused before any
   * processing). A 503 without Retry-After surfaces at once. `{ retries: 0 }`
   * turns it off.
   */
  unavailableRetry?: UnavailableRetryOptions;
  /**
   * Largest outer answer held whole: one with a Content-Length of at most
   * 1 MiB, an error answer, a protected message that is not a chunk stream
   * (default 32 MiB, and at least `maxBodyBytes` plus framing). TOO_LARGE above.
   */
  maxResponseBytes?: number;
  /**
   * Largest inner request or response content, whether given as bytes or
   * streamed (default: no bound, as fetch). A larger request body is
   * TOO_LARGE (local); a larger response TOO_LARGE (remote), in its body stream.
   */
  maxBodyBytes?: number;
  /**
   * Keep the latest TLS ticket of each origin (up to 256 origins) and offer it
   * at the next handshake there, after a lost session too (default true;
   * off with `tls.psk`, whose identity a resumed session does not carry).
   */
  resumption?: boolean;
  /** When to use ATLS at all (default `always`); see {@link AtlsPolicy}. */
  policy?: AtlsPolicy;
  /**
   * Report the transport certificate chain seen for an https origin inside
   * the ATLS session, so the service learns of a middlebox (default true;
   * costs one extra TLS connection per origin). docs/protocol.md §5.11.
   */
  reportTransport?: boolean;
  onEvent?: (event: AtlsClientEvent) => void;
  /** Shorthand for the `flight` events of `onEvent`. */
  onFlight?: (event: AtlsFlightEvent) => void;
}

/** What a client knows about one origin's session. */
export interface AtlsClientSessionInfo {
  origin: string;
  endpoint: string;
  state: SessionState;
  handshake: HandshakeInfo | undefined;
  /** POSTs sent for this session. */
  roundTrips: number;
  /** Inner requests answered. */
  requests: number;
  hasCookie: boolean;
}

/** A client: `fetch` through ATLS plus session management. */
export interface AtlsClient {
  /** Same signature and semantics as `fetch`; resolves with the inner response. */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Forget every session (sending close_notify in mode `records`) and close connections. */
  close(): Promise<void>;
  /** The session of each origin. */
  readonly sessions: ReadonlyMap<string, AtlsClientSessionInfo>;
}

/** The server no longer knows the session (404/410): handshake again. */
class SessionLost extends Error {
  constructor(readonly status: number) {
    super(`ATLS session lost (HTTP ${status})`);
  }
}

function statusCode(status: number): AtlsErrorCode {
  switch (status) {
    case 401:
      return 'CERTIFICATE_REQUIRED';
    case 403:
      return 'HANDSHAKE_FAILED';
    case 404:
    case 410:
      return 'CLOSED';
    case 409:
      return 'INVALID_STATE';
    case 413:
      return 'TOO_LARGE';
    case 415:
      return 'UNSUPPORTED';
    case 429:
    case 503:
      return 'LIMIT_REACHED';
    default:
      return status >= 500 ? 'INTERNAL' : 'MALFORMED_RECORD';
  }
}

/** The error an ATLS server's error response stands for. */
function responseError(res: TransportResponse, url: URL): AtlsError {
  const header = errorCodeFromHeader(res.headers.get('atls-error'));
  const type = mediaType(res.headers.get('content-type'));
  if (header === undefined && bodyKind(type) === undefined && type !== 'text/plain') {
    // Neither an ATLS body nor an ATLS error: a web server, a proxy's error page, a wrong port.
    return new AtlsError(
      'NOT_ATLS',
      `${url.href} answered ${res.status}${type ? ` ${type}` : ''}, not ATLS: no ATLS service at this origin and path`,
      { source: 'remote' },
    );
  }
  let detail = '';
  if (type.startsWith('text/')) {
    detail = new TextDecoder().decode(res.body.subarray(0, 200)).trim();
    detail = detail.replace(/\s+/g, ' ').replace(/[^\x20-\x7e]/g, '?');
  }
  const retryAfter = res.status === 503 ? parseRetryAfter(res.headers.get('retry-after')) : undefined;
  return new AtlsError(header ?? statusCode(res.status), `ATLS server ${url.href} answered ${res.status}${detail ? `: ${detail}` : ''}`, {
    source: 'remote',
    ...(retryAfter !== undefined ? { retryAfter } : {}),
  });
}

/** An outer answer: read whole (`bytes`), or still arriving (`stream`). */
interface OuterAnswer {
  status: number;
  headers: Headers;
  bytes: Uint8Array | undefined;
  stream: ReadableStream<Uint8Array> | null;
}

/** An answer that was read whole (every error answer is). */
function wholeAnswer(res: OuterAnswer): TransportResponse {
  return { status: res.status, headers: res.headers, body: res.bytes ?? new Uint8Array(0) };
}

/** `body`, erroring with TOO_LARGE (local) past `max` bytes. */
function limitedStream(body: ReadableStream<Uint8Array>, max: number): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let total = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const r = await reader.read();
        if (r.done) {
          controller.close();
          return;
        }
        total += r.value.length;
        if (total > max) {
          await reader.cancel().catch(() => undefined);
          throw new AtlsError('TOO_LARGE', `request body exceeds ${max} bytes`, { source: 'local' });
        }
        controller.enqueue(r.value);
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/**
 * The start of an answer that is still arriving: its first bytes (the
 * server's flight) taken off, the rest left to stream.
 */
class PrefixReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private held: Uint8Array = new Uint8Array(0);

  constructor(body: ReadableStream<Uint8Array>) {
    this.reader = body.getReader();
  }

  /** Reads until at least `n` bytes are held (TRUNCATED_FLIGHT when the body ends first). */
  private async fill(n: number): Promise<void> {
    while (this.held.length < n) {
      const r = await this.reader.read();
      if (r.done) throw new AtlsError('TRUNCATED_FLIGHT', `the answer ended within its first ${n} bytes`, { source: 'remote' });
      this.held = this.held.length === 0 ? r.value : concatBytes([this.held, r.value]);
    }
  }

  /** The first `n` bytes. */
  async take(n: number): Promise<Uint8Array> {
    await this.fill(n);
    const out = this.held.subarray(0, n);
    this.held = this.held.subarray(n);
    return out;
  }

  /** The whole TLS records at hand (at least one: the server's flight comes first). */
  async takeRecords(): Promise<Uint8Array> {
    await this.fill(1);
    for (;;) {
      const n = wholeRecordsLength(this.held);
      if (n > 0) return this.take(n);
      await this.fill(this.held.length + 1);
    }
  }

  /** What is left of the body, the held bytes first. */
  rest(): ReadableStream<Uint8Array> {
    let first: Uint8Array | undefined = this.held.length > 0 ? this.held : undefined;
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          if (first) {
            controller.enqueue(first);
            first = undefined;
            return;
          }
          const r = await this.reader.read();
          if (r.done) controller.close();
          else controller.enqueue(r.value);
        },
        cancel: (reason) => this.reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  }

  cancel(): Promise<void> {
    return this.reader.cancel().catch(() => undefined);
  }
}

/** A stream of one piece. */
function streamOfBytes(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (bytes.length > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
}

/** Other cookies kept per session, and the largest one (RFC 6265 §6.1 asks at least 50 and 4096 bytes). */
const MAX_OTHER_COOKIES = 16;
const MAX_OTHER_COOKIE_BYTES = 4096;
/** RFC 6265 §4.1.1: cookie-name is a token; cookie-value is cookie-octets, optionally quoted. */
const COOKIE_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const COOKIE_VALUE_RE = /^(?:"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"|[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*)$/;

/**
 * Cookies the origin sets besides the session cookie, such as a load
 * balancer's stickiness cookie (haproxy `cookie SRV insert`): sent back with
 * every POST of the session so that all its flights reach the instance that
 * holds it. A minimal jar: one origin, one path (the endpoint), kept for the
 * session's lifetime; only deletion (Max-Age <= 0, Expires in the past) is honoured.
 */
class OtherCookies {
  private readonly jar = new Map<string, string>();

  /** Takes one Set-Cookie header (not the session cookie's); malformed ones are ignored. */
  update(header: string): void {
    if (header.length > MAX_OTHER_COOKIE_BYTES) return;
    const [first = '', ...attrs] = header.split(';');
    const eq = first.indexOf('=');
    if (eq <= 0) return;
    const name = first.slice(0, eq).trim();
    const value = first.slice(eq + 1).trim();
    if (!COOKIE_NAME_RE.test(name) || !COOKIE_VALUE_RE.test(value)) return;
    const expired = attrs.some((a) => {
      const [k = '', v = ''] = a.split('=', 2).map((x) => x.trim());
      if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
      return k.toLowerCase() === 'expires' && Date.parse(v) < Date.now();
    });
    if (expired) this.jar.delete(name);
    else if (this.jar.has(name) || this.jar.size < MAX_OTHER_COOKIES) this.jar.set(name, value);
  }

  /** `name=value` pairs for the Cookie header (RFC 6265 §5.4). */
  pairs(): string[] {
    return [...this.jar].map(([n, v]) => `${n}=${v}`);
  }
}

/**
 * The latest resumption ticket of each origin: one per origin, at most
 * {@link MAX_TICKET_ORIGINS} origins, least recently used evicted first. A
 * ticket is opaque state from our own TLS stack (the `ticket` event), never
 * peer bytes taken as such, so its size is the engine's to bound.
 */
class TicketCache {
  private readonly map = new Map<string, Uint8Array>();

  constructor(private readonly cap: number) {}

  /** The origin's ticket, marked as recently used. */
  get(origin: string): Uint8Array | undefined {
    const t = this.map.get(origin);
    if (t !== undefined) {
      this.map.delete(origin);
      this.map.set(origin, t);
    }
    return t;
  }

  /** Keeps `ticket` as the origin's only one. */
  set(origin: string, ticket: Uint8Array): void {
    this.map.delete(origin);
    this.map.set(origin, ticket);
    while (this.map.size > this.cap) {
      const oldest = this.map.keys().next();
      if (oldest.done === true) break;
      this.map.delete(oldest.value);
    }
  }

  /** Only forgets `ticket` when it is still the origin's (a newer one may have replaced it). */
  delete(origin: string, ticket?: Uint8Array): void {
    if (ticket === undefined || this.map.get(origin) === ticket) this.map.delete(origin);
  }

  clear(): void {
    this.map.clear();
  }
}

/** One origin's ATLS session. */
class OriginSession {
  readonly session: AtlsClientSession;
  /** The ticket offered at this session's handshake, if any. */
  readonly offered: Uint8Array | undefined;
  /** The last ticket handed to the cache (so that each is stored once). */
  private kept: Uint8Array | undefined;
  cookie: string | undefined;
  /** Cookies of other names, e.g. a load balancer's (sent back so that flights stay on one instance). */
  private readonly otherCookies = new OtherCookies();
  roundTrips = 0;
  requests = 0;
  /** Resolves when the handshake is done. */
  ready: Promise<void> = Promise.resolve();
  private queue: Promise<unknown> = Promise.resolve();
  /** Mode `records`: engine calls, one at a time. */
  private engine: Promise<unknown> = Promise.resolve();
  /** The service answered a request that carried the transport report. */
  reportDelivered = false;
  /** Protected requests sealed and not yet answered, and those waiting for a slot. */
  private outstanding = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    readonly origin: string,
    readonly endpoint: URL,
    private readonly client: ClientCore,
  ) {
    const o = client.options;
    const serverName = o.tls?.serverName ?? endpoint.hostname.replace(/^\[|\]$/g, '');
    // An explicit tls.session wins; otherwise the origin's latest ticket (RFC 8446 §4.6.1, §2.2).
    this.offered = o.tls?.session ?? client.tickets?.get(origin);
    this.session = new AtlsClientSession({
      ...o.session,
      mode: o.mode ?? 'exported',
      ...(o.engine ? { engine: o.engine } : {}),
      tls: { ...o.tls, serverName, ...(this.offered ? { session: this.offered } : {}) },
    });
  }

  /** Hands the session's latest ticket, when new, to the client's cache. */
  keepTicket(): void {
    const tickets = this.client.tickets;
    const t = this.session.resumptionTicket;
    if (!tickets || t === undefined || t === this.kept) return;
    this.kept = t;
    tickets.set(this.origin, t);
  }

  /** After the handshake: a ticket the server did not take is dropped (it would fail again). */
  settleTicket(info: HandshakeInfo): void {
    const tickets = this.client.tickets;
    if (!tickets) return;
    if (this.offered && !info.resumed) tickets.delete(this.origin, this.offered);
    this.keepTicket();
  }

  get mode(): Mode {
    return this.session.mode;
  }

  /**
   * One POST, whose answer is read whole; a 503 with Retry-After is sent
   * again (bounded, with jitter) when `resendable` (the caller knows a second
   * delivery is harmless) or when the server says it refused before any
   * processing (LIMIT_REACHED).
   */
  private async post(
    body: Uint8Array,
    kind: AtlsFlightEvent['kind'],
    flightBytes: number,
    signal: AbortSignal | undefined,
    resendable: boolean,
  ): Promise<TransportResponse> {
    const res = await this.postAnswer(body, kind, flightBytes, signal, resendable, true);
    return { status: res.status, headers: res.headers, body: res.bytes! };
  }

  /**
   * One POST of a body, whole or a stream (sent as it is produced). The
   * answer is read whole when `whole`, when it is an error, or when it is
   * small (`bytes`); otherwise it is left to stream (`stream`). 503 as in
   * {@link post}, for whole bodies and for streams that `again` can make
   * anew (a stream of bytes at hand; a stream of the caller's cannot be sent again).
   */
  private async postAnswer(
    body: Uint8Array | ReadableStream<Uint8Array>,
    kind: AtlsFlightEvent['kind'],
    flightBytes: number,
    signal: AbortSignal | undefined,
    resendable: boolean,
    whole: boolean,
    again?: () => ReadableStream<Uint8Array>,
  ): Promise<OuterAnswer> {
    let sent = body;
    for (let attempt = 0; ; attempt++) {
      const res = await this.postOnce(sent, kind, flightBytes, signal, whole);
      if (res.status !== 503 || (!(sent instanceof Uint8Array) && again === undefined)) return res;
      if (!resendable && res.headers.get(HEADER_ERROR) !== 'LIMIT_REACHED') return res;
      const wait = retryDelayMs(parseRetryAfter(res.headers.get('retry-after')), attempt, this.client.unavailableRetry);
      if (wait === undefined) return res;
      await sleep(wait, undefined, signal ? { signal } : undefined);
      if (!(sent instanceof Uint8Array)) sent = again!(); // the refused stream was cancelled unread
    }
  }

  private async postOnce(
    body: Uint8Array | ReadableStream<Uint8Array>,
    kind: AtlsFlightEvent['kind'],
    flightBytes: number,
    signal: AbortSignal | undefined,
    whole: boolean,
  ): Promise<OuterAnswer> {
    const headers: Record<string, string> = {
      'content-type': kind === 'protected' ? MEDIA_TYPE_PROTECTED : MEDIA_TYPE_FLIGHT,
      accept: kind === 'protected' ? MEDIA_TYPE_PROTECTED : MEDIA_TYPE_FLIGHT,
    };
    if (kind === 'flight+protected') headers[HEADER_FLIGHT_LENGTH] = String(flightBytes);
    const cookies = this.otherCookies.pairs();
    // The session cookie first: a server or middlebox that reads only a prefix of a long header still finds it.
    if (this.cookie) cookies.unshift(`${COOKIE_NAME}=${this.cookie}`);
    if (cookies.length > 0) headers.cookie = cookies.join('; ');
    this.roundTrips++;
    const roundTrip = this.roundTrips;
    const sentStream = !(body instanceof Uint8Array);
    this.client.emit({
      type: 'flight',
      origin: this.origin,
      direction: 'sent',
      kind,
      bytes: sentStream ? new Uint8Array(0) : body,
      ...(sentStream ? { streamed: true } : {}),
      flightBytes,
      roundTrip,
      url: this.endpoint.href,
      headers: new Headers(headers),
    });
    const res = await this.client.transport.postStream(this.endpoint, body, headers, signal);
    for (const sc of res.headers.getSetCookie()) {
      const v = parseSetCookie(sc, COOKIE_NAME);
      if (v !== undefined) this.cookie = v === '' ? undefined : v;
      else this.otherCookies.update(sc);
    }
    const declared = res.headers.get('content-length');
    const small = declared !== null && /^\d+$/.test(declared) && Number(declared) <= WHOLE_ANSWER_MAX;
    let bytes: Uint8Array | undefined;
    if (whole || res.status !== 200 || small) {
      bytes = await readBody(res.body, this.client.maxResponse, declared);
      // A 413 may come before the server read the whole upload: stop sending it.
      if (sentStream) await body.cancel().catch(() => undefined);
    }
    const rkind = bodyKind(res.headers.get('content-type'));
    const split = res.headers.get(HEADER_FLIGHT_LENGTH);
    let rFlightBytes = rkind === 'flight' ? (bytes?.length ?? 0) : 0;
    if (bytes && split !== null && rkind === 'flight') {
      try {
        rFlightBytes = parseFlightLength(split, bytes.length);
      } catch {
        // reported below by the caller
      }
    }
    this.client.emit({
      type: 'flight',
      origin: this.origin,
      direction: 'received',
      kind: rkind === 'protected' ? 'protected' : split !== null ? 'flight+protected' : 'flight',
      bytes: bytes ?? new Uint8Array(0),
      ...(bytes ? {} : { streamed: true }),
      flightBytes: rFlightBytes,
      roundTrip,
      status: res.status,
      url: this.endpoint.href,
      headers: res.headers,
    });
    return { status: res.status, headers: res.headers, bytes, stream: bytes ? null : res.body };
  }

  /** Fails the handshake from an error response (its body may hold the server's alert). */
  private async handshakeError(res: TransportResponse): Promise<AtlsError> {
    const fallback = responseError(res, this.endpoint);
    const body = bodyKind(res.headers.get('content-type')) === 'flight' ? res.body : new Uint8Array(0);
    if (body.length > 0 && (this.session.state === 'handshaking' || this.session.state === 'confirming')) {
      // TLS 1.3 alerts after the ServerHello are encrypted: let the stack read the precise one.
      try {
        await this.session.receive(body);
      } catch (e) {
        if (e instanceof AtlsError) return e;
      }
    }
    return this.session.peerFailed(body, fallback);
  }

  /**
   * Runs the handshake. With `first`, the first inner request rides with the
   * client's final flight when there is one; resolves with its inner response.
   */
  async handshake(first: Uint8Array | undefined, signal: AbortSignal | undefined, idempotent = false): Promise<ReadableStream<Uint8Array> | undefined> {
    const started = Date.now();
    let sent = 0;
    let received = 0;
    let out: FlightResult = await this.session.start();
    let piggyBacked = false;
    let answer: ReadableStream<Uint8Array> | undefined;
    let earlyAnswer: Uint8Array | undefined;
    let reported = false;
    for (;;) {
      if (this.roundTrips >= MAX_HANDSHAKE_ROUND_TRIPS) {
        throw new AtlsError('HANDSHAKE_FAILED', `handshake did not finish in ${MAX_HANDSHAKE_ROUND_TRIPS} round trips`, {
          source: 'remote',
        });
      }
      // Records of accepted early data: the answer to the final flight is the early request's (server §5.7).
      const earlyAccepted = this.mode === 'records' && this.session.handshakeInfo?.earlyData === 'accepted';
      const rider = this.session.state === 'confirming' && !earlyAccepted ? first : undefined;
      const ride = rider !== undefined;
      let body = out.flight;
      let kind: AtlsFlightEvent['kind'] = 'flight';
      if (rider && this.mode === 'exported') {
        body = concatBytes([out.flight, this.session.protect(rider)]);
        kind = 'flight+protected';
      } else if (rider) {
        body = concatBytes([out.flight, await this.session.send(rider)]); // whole records either way
      }
      piggyBacked ||= ride;
      sent += body.length;
      // The answer to a request that rode along may stream: the flight is taken from its start.
      const res = await this.postAnswer(body, kind, out.flight.length, signal, !ride || idempotent, !ride);
      if (res.status !== 200) throw await this.handshakeError(wholeAnswer(res));
      if (bodyKind(res.headers.get('content-type')) !== 'flight') {
        await res.stream?.cancel().catch(() => undefined);
        throw this.session.peerFailed(
          new Uint8Array(0),
          new AtlsError('MALFORMED_RECORD', `ATLS server answered a flight with ${res.headers.get('content-type') ?? 'no Content-Type'}`, {
            source: 'remote',
          }),
        );
      }
      const whole = res.bytes ?? new Uint8Array(0);
      const reader = res.stream ? new PrefixReader(res.stream) : undefined;
      let flight = whole;
      let sealed: Uint8Array | undefined;
      if (ride && this.mode === 'exported') {
        const split = res.headers.get(HEADER_FLIGHT_LENGTH);
        if (split === null) {
          await reader?.cancel();
          throw this.session.peerFailed(new Uint8Array(0), new AtlsError('MALFORMED_MESSAGE', 'the server did not answer the piggy-backed request', { source: 'remote' }));
        }
        const n = parseFlightLength(split, reader ? Number.MAX_SAFE_INTEGER : whole.length);
        flight = reader ? await reader.take(n) : whole.subarray(0, n);
        sealed = reader ? undefined : whole.subarray(n);
      } else if (reader) {
        flight = await reader.takeRecords();
      }
      received += reader ? flight.length : whole.length;
      out = await this.session.receive(flight);
      const data = out.events.flatMap((e) => (e.type === 'data' ? [e.data] : []));
      const hs = out.events.find((e) => e.type === 'handshake');
      // The event, or the state: a records-mode send() in `confirming` may have taken the event already.
      const info = hs?.type === 'handshake' ? hs.info : this.session.state === 'established' ? this.session.handshakeInfo : undefined;
      if (info && !reported) {
        reported = true;
        this.settleTicket(info);
        this.client.emit({
          type: 'handshake',
          origin: this.origin,
          info,
          roundTrips: this.roundTrips,
          bytesSent: sent,
          bytesReceived: received,
          durationMs: Date.now() - started,
          piggyBacked,
        });
      }
      if (ride) {
        // The answer to the request that rode with the final flight, whole or still arriving.
        first = undefined;
        if (this.mode === 'exported') {
          answer = unprotectBody(this.session.protectedChannel, reader ? reader.rest() : streamOfBytes(sealed!), this.client.maxResponse);
        } else if (reader) {
          const { plain, done } = this.recordsIn(reader.rest(), data);
          this.queue = done;
          answer = plain;
        } else if (data.length > 0) {
          answer = streamOfBytes(concatBytes(data));
        } else {
          throw new AtlsError('MALFORMED_RECORD', 'no response rode with the final flight', { source: 'remote' });
        }
        this.requests++;
      }
      if (!ride && earlyAccepted && data.length > 0) earlyAnswer = concatBytes(data);
      if (this.session.state === 'established' && out.flight.length === 0) {
        this.keepTicket(); // TLS 1.3 tickets come after the client's Finished
        if (earlyAnswer) await this.earlyAnswered(earlyAnswer, signal);
        return answer;
      }
      if (this.session.state !== 'handshaking' && this.session.state !== 'confirming' && this.session.state !== 'established') {
        throw this.session.error ?? new AtlsError('CLOSED', 'the server closed the ATLS session during the handshake', { source: 'remote' });
      }
    }
  }

  /**
   * The answer to the request that came as accepted early data: reported;
   * a 425 (Too Early) sends the request again now that the handshake is
   * complete, once, as ordinary records (RFC 8470 §5.2: a client that sent
   * it in early data MUST retry, not in early data).
   */
  private async earlyAnswered(response: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    const status = decodeResponse(response).status;
    this.client.emit({ type: 'early-data', origin: this.origin, status, response, retried: false });
    const request = this.client.options.tls?.earlyData;
    if (status !== 425 || request === undefined) return;
    const again = await readBody(await this.request(request, signal), this.client.maxResponse);
    this.client.emit({ type: 'early-data', origin: this.origin, status: decodeResponse(again).status, response: again, retried: true });
  }

  /** Runs `fn` alone on the TLS engine (mode `records`: an upload and its answer may overlap). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.engine.then(fn);
    this.engine = run.catch(() => undefined);
    return run;
  }

  /**
   * Sends one inner request over the established session: whole bytes, or
   * a Binary HTTP stream sent as it is produced. Resolves, once the outer
   * answer has arrived, with the inner response's bytes as they arrive.
   */
  async request(inner: Uint8Array | ReadableStream<Uint8Array>, signal: AbortSignal | undefined, idempotent = false): Promise<ReadableStream<Uint8Array>> {
    if (this.mode === 'exported') {
      // Architecture (b): protected messages may overlap (the server's replay
      // window reorders), up to MAX_OUTSTANDING, sealed only once a slot is free.
      if (this.outstanding < MAX_OUTSTANDING) this.outstanding++;
      else await new Promise<void>((resolve) => this.waiting.push(resolve));
      try {
        // Bytes over MAX_WHOLE_REQUEST_BYTES go as a chunk stream, sealed anew (new numbers) if a 503 asks for them again.
        const sealStream = (plain: ReadableStream<Uint8Array>) =>
          // An indeterminate-length message is one whose content was not at hand: its head leaves at once.
          protectBody(this.session.protectedChannel, plain, { streamAtOnce: (first) => first[0] === INDETERMINATE_REQUEST });
        const large = inner instanceof Uint8Array && inner.length > MAX_WHOLE_REQUEST_BYTES ? inner : undefined;
        const body = large ? sealStream(streamOfBytes(large)) : inner instanceof Uint8Array ? this.session.protect(inner) : sealStream(inner);
        const res = await this.postAnswer(body, 'protected', 0, signal, idempotent, false, large && (() => sealStream(streamOfBytes(large))));
        if (res.status === 404 || res.status === 410) throw new SessionLost(res.status);
        if (res.status !== 200) throw responseError(wholeAnswer(res), this.endpoint);
        if (bodyKind(res.headers.get('content-type')) !== 'protected') {
          await res.stream?.cancel().catch(() => undefined);
          throw new AtlsError('MALFORMED_MESSAGE', 'ATLS server answered without a protected message', { source: 'remote' });
        }
        this.requests++;
        // Either form, whole or arriving: one protected message, or a chunk stream (§4.1).
        return unprotectBody(this.session.protectedChannel, res.bytes ? streamOfBytes(res.bytes) : res.stream, this.client.maxResponse);
      } finally {
        // The slot passes straight to the next waiter, so the count never overshoots.
        const next = this.waiting.shift();
        if (next) next();
        else this.outstanding--;
      }
    }
    // Architecture (a): TLS records are sequenced, so one request at a time, its answer read to the end.
    const run = this.queue.then(async () => {
      const body =
        inner instanceof Uint8Array && inner.length <= MAX_WHOLE_REQUEST_BYTES
          ? await this.exclusive(() => this.session.send(inner))
          : this.recordsOut(inner instanceof Uint8Array ? streamOfBytes(inner) : inner);
      const res = await this.postAnswer(body, 'flight', 0, signal, idempotent, false);
      if (res.status === 404 || res.status === 410) throw new SessionLost(res.status);
      if (res.status !== 200) {
        // Records the server did not take (a 413 refuses them unread) leave the two ends' record
        // sequence numbers apart: this session cannot go on; the next request handshakes again.
        this.session.destroy();
        throw responseError(wholeAnswer(res), this.endpoint);
      }
      if (bodyKind(res.headers.get('content-type')) !== 'flight') {
        await res.stream?.cancel().catch(() => undefined);
        throw new AtlsError('MALFORMED_RECORD', 'ATLS server answered without TLS records', { source: 'remote' });
      }
      this.requests++;
      return this.recordsIn(res.bytes ? streamOfBytes(res.bytes) : res.stream);
    });
    this.queue = run.then((r) => r.done).catch(() => undefined);
    return (await run).plain;
  }

  /** Mode `records`: the records of `plain`, each piece sent as it is produced. */
  private recordsOut(plain: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const reader = plain.getReader();
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          for (;;) {
            const r = await reader.read();
            if (r.done) {
              controller.close();
              return;
            }
            if (r.value.length === 0) continue;
            controller.enqueue(await this.exclusive(() => this.session.send(r.value)));
            return;
          }
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  }

  /**
   * Mode `records`: the application data of an answer whose records arrive
   * in pieces, fed to the engine a whole record at a time. Up to
   * {@link RECORDS_READ_AHEAD} bytes are read ahead of the application;
   * `done` settles when the answer has been read to its end (the next
   * request may then go), and the session is destroyed when it fails
   * half-way (the two ends' record numbers are apart).
   */
  private recordsIn(body: ReadableStream<Uint8Array> | null, initial: Uint8Array[] = []): { plain: ReadableStream<Uint8Array>; done: Promise<void> } {
    const reader = body?.getReader();
    let pending: Uint8Array = new Uint8Array(0);
    let settle!: () => void;
    const done = new Promise<void>((resolve) => (settle = resolve));
    const fail = async (e: unknown): Promise<never> => {
      this.session.destroy();
      settle();
      // Stop the transport too: an unread body would hold its connection.
      await reader?.cancel(e).catch(() => undefined);
      throw e;
    };
    const plain = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          for (const d of initial) controller.enqueue(d);
        },
        pull: async (controller) => {
          try {
            for (;;) {
              const r = reader ? await reader.read() : { done: true as const, value: undefined };
              if (r.done) {
                if (pending.length > 0) throw new AtlsError('TRUNCATED_FLIGHT', 'the answer ends inside a TLS record', { source: 'remote' });
                controller.close();
                settle();
                return;
              }
              const buf = pending.length === 0 ? r.value : concatBytes([pending, r.value]);
              const n = wholeRecordsLength(buf);
              // Copied: the transport may reuse its buffer; at most one incomplete record is kept.
              pending = buf.slice(n);
              if (n === 0) continue;
              const step = await this.exclusive(() => this.session.receive(buf.subarray(0, n)));
              if (step.events.some((e) => e.type === 'ticket')) this.keepTicket();
              let data = false;
              for (const e of step.events) {
                if (e.type === 'data') {
                  controller.enqueue(e.data);
                  data = true;
                }
              }
              if (step.events.some((e) => e.type === 'closed')) throw new AtlsError('CLOSED', 'the server closed the ATLS session', { source: 'remote' });
              if (data) return;
            }
          } catch (e) {
            await fail(e);
          }
        },
        cancel: async (reason) => {
          await reader?.cancel(reason);
          this.session.destroy();
          settle();
        },
      },
      new ByteLengthQueuingStrategy({ highWaterMark: RECORDS_READ_AHEAD }),
    );
    return { plain, done };
  }

  info(): AtlsClientSessionInfo {
    return {
      origin: this.origin,
      endpoint: this.endpoint.href,
      state: this.session.state,
      handshake: this.session.handshakeInfo,
      roundTrips: this.roundTrips,
      requests: this.requests,
      hasCookie: this.cookie !== undefined,
    };
  }

  /** Mode `records`: tell the server (close_notify); mode `exported`: forget the keys. */
  async close(): Promise<void> {
    const state = this.session.state;
    if (state !== 'established') {
      this.session.destroy();
      return;
    }
    try {
      const records = await this.session.close();
      if (records.length > 0 && this.cookie) await this.post(records, 'flight', records.length, AbortSignal.timeout(2000), false);
    } catch {
      // Best effort: the server forgets the session by TTL anyway.
    }
  }
}

/** Shared state of a client. */
class ClientCore {
  readonly transport: HttpTransport;
  readonly maxResponse: number;
  readonly unavailableRetry: Required<UnavailableRetryOptions>;
  /** Largest inner content, request or response, given as bytes or streamed (`maxBodyBytes`; unbounded by default). */
  readonly maxContent: number;
  readonly sessions = new Map<string, OriginSession>();
  /** Latest ticket per origin; undefined with `resumption: false`. */
  readonly tickets: TicketCache | undefined;
  /** The transport TLS of each https origin, checked once per client. */
  private readonly observed = new Map<string, Promise<TransportObservation | undefined>>();

  constructor(readonly options: AtlsClientOptions) {
    // With an external PSK no ticket is used: both engines' servers report no PSK identity on a
    // resumed session, and the identity is what a PSK client is authorized by (RFC 8446 §2.2).
    const resume = options.resumption !== false && options.tls?.psk === undefined;
    this.tickets = resume ? new TicketCache(MAX_TICKET_ORIGINS) : undefined;
    this.transport = new HttpTransport(options.transport, {
      ...(options.proxy !== undefined ? { proxy: options.proxy } : {}),
      ...(options.env ? { env: options.env } : {}),
    });
    // As fetch: no bound on bodies unless one is set (what streams is not held; bytes given are the caller's own).
    this.maxContent = options.maxBodyBytes ?? Number.MAX_SAFE_INTEGER;
    this.unavailableRetry = resolveUnavailableRetry(options.unavailableRetry);
    // Room for the inner response's head and the protection around it.
    this.maxResponse = options.maxResponseBytes ?? Math.max(DEFAULT_MAX_RESPONSE, (options.maxBodyBytes ?? 0) + 64 * 1024);
    const ep = options.endpoint ?? DEFAULT_ENDPOINT;
    if (!ep.startsWith('/')) throw new AtlsError('INVALID_ARGUMENT', 'endpoint must be a path starting with "/"');
  }

  emit(ev: AtlsClientEvent): void {
    try {
      this.options.onEvent?.(ev);
      if (ev.type === 'flight') this.options.onFlight?.(ev);
    } catch {
      // Logging hooks must not break requests.
    }
  }

  /** The origin's live session, or a new one whose handshake this call runs. */
  private async acquire(
    origin: string,
    first: Uint8Array | undefined,
    signal: AbortSignal | undefined,
    idempotent: boolean,
  ): Promise<{ os: OriginSession; answer: ReadableStream<Uint8Array> | undefined }> {
    const existing = this.sessions.get(origin);
    if (existing && existing.session.state !== 'closed' && existing.session.state !== 'failed') {
      await existing.ready;
      return { os: existing, answer: undefined };
    }
    const os = new OriginSession(origin, new URL(this.options.endpoint ?? DEFAULT_ENDPOINT, origin), this);
    this.sessions.set(origin, os);
    const run = os.handshake(first, signal, idempotent);
    os.ready = run.then(
      () => undefined,
      (e: unknown) => {
        throw e;
      },
    );
    os.ready.catch(() => undefined); // waiters see the error; nobody else must
    try {
      return { os, answer: await run };
    } catch (e) {
      if (this.sessions.get(origin) === os) this.sessions.delete(origin);
      // A handshake that offered a ticket and failed must not offer it again.
      if (os.offered) this.tickets?.delete(origin, os.offered);
      os.session.destroy();
      throw e;
    }
  }

  async fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    // An input Fetch refuses (a bad URL or method, a GET with a body) is Fetch's own TypeError, as fetch rejects with it.
    const request = new Request(input, init);
    const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
    // A body given as a stream has no source to send again (Fetch: 307/308 then fail).
    const resendable = !(init?.body instanceof ReadableStream);
    let hop: Hop = {
      url: new URL(request.url),
      method: request.method,
      headers: request.headers,
      body: !request.body ? null : resendable ? await readLimited(request.body, this.maxContent, 'local') : limitedStream(request.body, this.maxContent),
    };
    const urls = [hop.url];
    for (;;) {
      const response = await this.fetchOnce(hop, signal);
      if (!isRedirectStatus(response.status) || request.redirect === 'manual') return withFinalUrl(abortable(response, signal), urls);
      const location = locationOf(response, hop.url);
      if (location === undefined) return withFinalUrl(abortable(response, signal), urls);
      await response.body?.cancel();
      if (request.redirect === 'error') throw networkError('unexpected redirect');
      if (location.protocol !== 'http:' && location.protocol !== 'https:') throw networkError('URL scheme must be a HTTP(S) scheme');
      if (urls.length > MAX_REDIRECTS) throw networkError('redirect count exceeded');
      if ((response.status === 307 || response.status === 308) && hop.body !== null && !resendable) {
        throw networkError('cannot send a streamed body again after a redirect');
      }
      hop = followRedirect(hop, response.status, location);
      urls.push(location);
    }
  }

  /** The transport TLS of an https origin as this client sees it; undefined when it cannot be seen. */
  private observe(url: URL): Promise<TransportObservation | undefined> {
    if (url.protocol !== 'https:' || this.transport.opaque) return Promise.resolve(undefined);
    let seen = this.observed.get(url.origin);
    if (!seen) {
      const proxy = this.transport.proxyFor(url);
      const ca = this.transport.trustStore;
      seen = observeTransport(url, { ...(ca ? { ca } : {}), ...(proxy ? { proxy } : {}) }).catch(() => undefined);
      this.observed.set(url.origin, seen);
    }
    return seen;
  }

  /** One request, no redirects: over the origin's session, handshaking when there is none. */
  private async fetchOnce(hop: Hop, signal: AbortSignal | undefined): Promise<Response> {
    const { url, method } = hop;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      // Fetch: a scheme it cannot fetch is a network error (TypeError), here with the typed reason as its cause.
      throw new TypeError('fetch failed', { cause: new AtlsError('INVALID_ARGUMENT', `ATLS over HTTP needs an http(s) URL, not ${url.protocol}`) });
    }
    const policy = this.options.policy ?? 'always';
    if (policy !== 'always' && policy !== 'auto' && policy !== 'never') {
      throw new AtlsError('INVALID_ARGUMENT', `policy must be always, auto or never, not ${JSON.stringify(policy)}`);
    }
    const seen = policy === 'never' ? undefined : policy === 'auto' || this.options.reportTransport !== false ? await this.observe(url) : undefined;
    // draft §6.2: a transport that verifies end to end needs no ATLS.
    const plain = policy === 'never' || (policy === 'auto' && seen?.verified === true);
    this.emit({ type: 'policy', origin: url.origin, policy, use: plain ? 'plain' : 'atls', transport: seen });
    if (plain) {
      const request = new Request(url, { method, headers: hop.headers, body: hop.body, redirect: 'manual', duplex: 'half' } as RequestInit);
      return this.transport.plain(request, hop.body, policy === 'auto', signal);
    }
    const limits = { maxContent: this.maxContent };
    // A body given as a stream goes as a Binary HTTP stream, sent as it is produced, once the session is up.
    const streamed = hop.body instanceof ReadableStream;
    const innerRequest = (headers: Headers): Request =>
      new Request(url, { method, headers, body: hop.body, duplex: 'half' } as RequestInit);
    const bhttp = streamed ? undefined : await requestToBhttp(innerRequest(hop.headers), limits);
    let reportHeaders: Headers | undefined;
    let reported: Uint8Array | undefined;
    if (seen && this.options.reportTransport !== false) {
      reportHeaders = new Headers(hop.headers);
      for (const [name, value] of transportReportFields(seen)) reportHeaders.set(name, value);
      if (!streamed) reported = await requestToBhttp(innerRequest(reportHeaders), limits);
    }
    const idempotent = isIdempotent(method);
    // A stream cannot be sent twice; bytes can.
    const resend = !(hop.body instanceof ReadableStream) && (idempotent || this.options.retryNonIdempotent === true);
    // A large request waits for the handshake: riding with the final flight it would count as one.
    const piggyback = this.options.piggyback !== false && bhttp !== undefined && bhttp.length <= MAX_PIGGYBACK_BYTES;
    for (let attempt = 0; ; attempt++) {
      const { os, answer } = await this.acquire(url.origin, piggyback ? (reported ?? bhttp) : undefined, signal, idempotent);
      if (answer) {
        os.reportDelivered = true;
        return bhttpStreamToResponse(answer, limits);
      }
      try {
        // The report rides on requests until the service has answered one of them.
        const withReport = reportHeaders !== undefined && !os.reportDelivered;
        let inner: Uint8Array | ReadableStream<Uint8Array>;
        if (bhttp) inner = withReport ? reported! : bhttp; // over MAX_WHOLE_REQUEST_BYTES, request() streams it
        else inner = requestToBhttpStream(innerRequest(withReport ? reportHeaders! : hop.headers));
        const plain = await os.request(inner, signal, idempotent);
        if (withReport) os.reportDelivered = true;
        return await bhttpStreamToResponse(plain, limits);
      } catch (e) {
        if (!(e instanceof SessionLost)) throw e;
        if (this.sessions.get(url.origin) === os) this.sessions.delete(url.origin);
        os.session.destroy();
        const retry = attempt === 0 && resend;
        this.emit({ type: 'session-lost', origin: url.origin, status: e.status, resend: retry });
        if (!retry) {
          throw new AtlsError(
            'CLOSED',
            attempt === 0
              ? `the ATLS session with ${url.origin} was lost (HTTP ${e.status}); ${hop.body instanceof ReadableStream ? 'its body was a stream' : `${method} is not idempotent`}, so it was not resent`
              : `the ATLS session with ${url.origin} was lost again right after a new handshake (HTTP ${e.status})`,
            { source: 'remote' },
          );
        }
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    this.tickets?.clear();
    await Promise.all(all.map((s) => s.close()));
    await this.transport.close();
  }
}

/**
 * Creates an ATLS client. ATLS trust (`tls`) and transport trust
 * (`transport`) are separate: the transport may be a TLS-intercepting
 * middlebox, which ATLS does not need to trust (draft §6.3).
 *
 * @example
 * ```ts
 * const client = createAtlsClient({
 *   tls: { ca: caPem, cert: clientPem, key: clientKey },   // ATLS, end to end
 *   transport: { insecure: true },                          // the middlebox in between
 *   onFlight: (f) => console.error(f.direction, f.bytes.length),
 * });
 * const res = await client.fetch('https://service.example/hello');
 * ```
 */
export function createAtlsClient(options: AtlsClientOptions = {}): AtlsClient {
  const core = new ClientCore(options);
  return {
    fetch: (input, init) => core.fetch(input, init),
    close: () => core.close(),
    get sessions(): ReadonlyMap<string, AtlsClientSessionInfo> {
      return new Map([...core.sessions].map(([k, v]) => [k, v.info()]));
    },
  };
}

/** Clients kept by {@link atlsFetch}, one per distinct setting; the least recently used is closed first. */
const MAX_POOLED_CLIENTS = 32;
const pooledClients = new Map<string, AtlsClient>();
/** Identities of values compared by identity (functions, engines, dispatchers). */
const identities = new WeakMap<object, number>();
let nextIdentity = 0;

/**
 * A canonical text of client options: equal for options that mean the same
 * (same trust anchors, identity, mode, transport, hooks), whatever object
 * holds them. Bytes compare by content, plain objects by their sorted
 * fields, anything else (functions, engines, dispatchers) by identity.
 */
export function optionsKey(value: unknown): string {
  if (value === undefined) return 'u';
  if (value === null || typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return `b${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  if (Array.isArray(value)) return `[${value.map(optionsKey).join(',')}]`;
  if (typeof value === 'object' && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) {
    const fields = Object.keys(value).sort().filter((k) => (value as Record<string, unknown>)[k] !== undefined);
    return `{${fields.map((k) => `${JSON.stringify(k)}:${optionsKey((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  const o = value as object;
  let id = identities.get(o);
  if (id === undefined) identities.set(o, (id = nextIdentity++));
  return `#${id}`;
}

/** The pooled client for these settings (made on first use). */
function pooledClient(options: AtlsClientOptions): AtlsClient {
  const key = optionsKey(options);
  let client = pooledClients.get(key);
  if (client) {
    pooledClients.delete(key); // most recently used goes last
  } else {
    client = createAtlsClient(options);
    while (pooledClients.size >= MAX_POOLED_CLIENTS) {
      const [oldKey, oldest] = pooledClients.entries().next().value as [string, AtlsClient];
      pooledClients.delete(oldKey);
      void oldest.close();
    }
  }
  pooledClients.set(key, client);
  return client;
}

/** `RequestInit` plus the client options to use. */
export interface AtlsRequestInit extends RequestInit {
  atls?: AtlsClientOptions;
}

/**
 * `fetch` through ATLS with process-wide clients (default trust: Node's
 * root store for ATLS and transport; proxies from the environment). Pass
 * `init.atls` for other settings: calls with equal settings share one
 * client, hence its sessions and its keep-alive connections, whether or not
 * they pass the same object (up to 32 distinct settings are kept).
 *
 * @example
 * ```ts
 * const res = await atlsFetch('https://service.example/hello', { atls: { tls: { ca } } });
 * ```
 */
export function atlsFetch(input: string | URL | Request, init?: AtlsRequestInit): Promise<Response> {
  const { atls, ...rest } = init ?? {};
  return pooledClient(atls ?? {}).fetch(input, init ? rest : undefined);
}

/**
 * Fetch: once the request's signal aborts, reading the body rejects with the
 * signal's reason (an AbortError by default), whatever layer noticed the cut
 * first (the transport, Binary HTTP, the record or chunk reader).
 */
function abortable(response: Response, signal: AbortSignal | undefined): Response {
  // A null-body status keeps its response (the Response constructor refuses a body with one).
  if (!signal || !response.body || [101, 204, 205, 304].includes(response.status)) return response;
  const reader = response.body.getReader();
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let r: Awaited<ReturnType<typeof reader.read>>;
        try {
          r = await reader.read();
        } catch (e) {
          throw signal.aborted ? signal.reason : e;
        }
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}
