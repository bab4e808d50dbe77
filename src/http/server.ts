/**
 * The server side of the HTTP binding (draft §9, docs/protocol.md §5): a
 * Web-standard `(Request) => Promise<Response>` handler for the ATLS
 * endpoints. It runs the handshake flight by flight, tracks sessions by
 * cookie, and dispatches every inner request (one Binary HTTP message) to the
 * application as an ordinary `Request`, protecting its `Response`.
 *
 * @example
 * ```ts
 * const handler = createAtlsHandler({
 *   tls: { cert, key },
 *   app: (req, peer) => new Response(`hello ${peer.subject ?? peer.pskIdentity}`),
 * });
 * const res = await handler(new Request('http://localhost/.well-known/atls', { method: 'POST', ... }));
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { TlsEngine, TlsServerConfig } from '../engines/types.js';
import { checkServerCredentials } from '../engines/credentials.js';
import { AtlsServerSession } from '../session/session.js';
import type { Mode, SessionOptions } from '../session/types.js';
import { bhttpToRequest, responseToBhttp } from '../bhttp/web.js';
import { BHTTP_DEFAULT_LIMITS, decodeRequest, encodeResponse, type BhttpLimits, type BhttpRequest, type BhttpResponseInit } from '../bhttp/codec.js';
import { authorityValid, latin1Bytes } from '../bhttp/fields.js';
import { concatBytes } from '../bytes.js';
import { parseServerHello } from '../records.js';
import {
  COOKIE_NAME,
  DEFAULT_ENDPOINTS,
  DEFAULT_HANDSHAKE_TTL_MS,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_HALF_OPEN,
  DEFAULT_MAX_SESSIONS,
  DEFAULT_SESSION_TTL_MS,
  HEADER_FLIGHT_LENGTH,
  MEDIA_TYPE_FLIGHT,
  MEDIA_TYPE_FLIGHT_LATER,
  MEDIA_TYPE_PROTECTED,
} from './constants.js';
import { readCookie, setCookie } from './cookie.js';
import { MemoryStore, isSyncStore, isValidRoutingTag, newSessionId, parseSessionId } from '../store/index.js';
import { HalfOpenLedger } from '../store/half-open.js';
import { TrustedProxies, peerGroup } from '../peers.js';
import type { SessionStore, SyncSessionStore } from '../store/index.js';
import { peerFromHandshake, type AtlsPeer } from './peer.js';
import { HEADER_TRANSPORT_CHAIN, HEADER_TRANSPORT_VERIFIED, parseTransportReport, type TransportReport } from './transport-report.js';
import { X509Certificate } from 'node:crypto';
import {
  HttpRefusal,
  NO_STORE,
  bodyKind,
  errorReply,
  errorResponse,
  mediaType,
  parseFlightLength,
  readBody,
  replyToResponse,
  startsWithClientHello,
  type HttpReply,
} from './wire.js';

/** What the application gets besides the inner request. */
export interface AtlsAppContext {
  /**
   * The outer HTTP request that carried the inner one (its headers are the
   * middleboxes' view). On the `node:http` fast path it is built when first read.
   */
  readonly outer: Request;
  /** Address of the outer connection's peer (the client, or the last middlebox), when the front knows it. */
  readonly remoteAddress?: string | undefined;
}

/**
 * The inner application: an ordinary fetch-style handler that also sees the
 * authenticated peer. Its own failures (throwing, 5xx) travel protected.
 */
export type AtlsApp = (request: Request, peer: AtlsPeer, context: AtlsAppContext) => Promise<Response> | Response;

/**
 * A raw inner application: the decoded Binary HTTP request in, a Binary HTTP
 * response out, no fetch objects built on either side (much cheaper per
 * request on Node 20). The request's empty scheme and authority are filled
 * in from the outer request (authority: the inner `host` field first); its
 * `content` is a view into the decrypted message. Throwing, or returning
 * something `encodeResponse` refuses, becomes an inner 500.
 *
 * @example
 * ```ts
 * const hello: AtlsRawApp = (req) => ({ status: 200, headers: [['content-type', 'text/plain']],
 *   content: new TextEncoder().encode(`hello ${req.path}`) });
 * ```
 */
export type AtlsRawApp = (
  request: BhttpRequest,
  peer: AtlsPeer,
  context: AtlsAppContext,
) => BhttpResponseInit | Promise<BhttpResponseInit>;

/**
 * An outer request as the byte-level core ({@link AtlsHandler.serve}) sees it:
 * what the Web handler and the `node:http` listener both reduce a request to.
 */
export interface AtlsRawRequest {
  method: string;
  /** Path of the request target, without the query. */
  pathname: string;
  /** A request header by lower-case name (repeated fields joined as fetch joins them); null or undefined when absent. */
  header(name: string): string | null | undefined;
  /**
   * Reads the whole body, refusing more than `max` bytes with AtlsError
   * TOO_LARGE (source remote). Called at most once, after method and media type passed.
   */
  body(max: number): Promise<Uint8Array>;
  /** The socket's peer address, when known (fairness limits, logs). */
  remoteAddress?: string | undefined;
  /** The outer request came over https: the cookie gets Secure (`secureCookie: 'auto'`), the inner scheme defaults to https. */
  https: boolean;
  /** Authority (Host) of the outer request: the inner request's default. */
  authority: string;
  /** The outer request as a fetch `Request`, for apps that read `context.outer`; called only then. */
  outer(): Request;
}

/** The core's answer: status, field lines (lower-case names, `set-cookie` may repeat) and body bytes. */
export type AtlsRawReply = HttpReply;

/** Resource limits of a handler. */
export interface AtlsHandlerLimits {
  /** Largest request body accepted (413 above; default 1 MiB). */
  maxBodyBytes?: number;
  /** Handshakes in progress at once (503 above; default 1000). */
  maxHalfOpen?: number;
  /** Sessions in total, half-open or established (503 above; default 100000). */
  maxSessions?: number;
  /** A half-open handshake is forgotten after this long (default 30 s). */
  handshakeTtlMs?: number;
}

/**
 * A limit was hit (`limit`), something made room for a newcomer
 * (`evicted`), or a newcomer was turned away (`refused`). `peer` is the
 * fairness group: an address, or a /64 for IPv6.
 */
export type AtlsLimitEvent =
  | { type: 'limit'; limit: string; peer: string }
  | { type: 'evicted'; what: 'connection' | 'half-open' | 'session' | 'transfer' | 'cached-response'; peer: string; reason: string }
  | { type: 'refused'; what: 'connection' | 'half-open' | 'session' | 'transfer'; peer: string; reason: string }
  /** A client took too long: its connection was closed (HTTP: 408), its state dropped. */
  | { type: 'timeout'; what: string; peer: string };

/**
 * Things a handler reports, e.g. for `atls serve` logs. Hooks must not throw
 * (errors are swallowed). `address` is the client's address (behind a
 * trusted proxy: the one it reports), when known.
 */
export type AtlsServerEvent =
  | { type: 'session'; sessionId: string; address?: string | undefined }
  | { type: 'flight'; sessionId: string; received: number; sent: number; state: string }
  | { type: 'handshake'; peer: AtlsPeer; address?: string | undefined }
  | { type: 'request'; peer: AtlsPeer; method: string; url: string; status: number }
  | { type: 'app-error'; peer: AtlsPeer; error: unknown }
  | { type: 'error'; sessionId: string | undefined; error: AtlsError; status: number; address?: string | undefined }
  | { type: 'end'; sessionId: string; reason: 'closed' | 'failed' | 'replaced' | 'expired' | 'evicted' }
  /** One outer request answered on an ATLS endpoint, and how long it took (ms). */
  | { type: 'reply'; status: number; ms: number }
  /** The client reported its transport TLS (draft §6.2), once per session. */
  | { type: 'transport'; peer: AtlsPeer; report: TransportReport }
  | AtlsLimitEvent;

/** Options of {@link createAtlsHandler}. */
export interface AtlsHandlerOptions {
  /** The ATLS server's TLS configuration (certificate, client authentication, PSK lookup, versions). */
  tls: TlsServerConfig;
  /** The inner application (fetch-style). Required unless `rawApp` is given. */
  app?: AtlsApp;
  /** A raw inner application; when given it is used instead of `app` (see {@link AtlsRawApp}). */
  rawApp?: AtlsRawApp;
  /** `exported` (architecture b, default) or `records` (architecture a). */
  mode?: Mode;
  /** Endpoint paths answered (default `/.well-known/atls` and `/atls`). */
  endpoints?: readonly string[];
  limits?: AtlsHandlerLimits;
  /**
   * Where sessions live (default: an in-memory store sized by `limits.maxSessions`).
   * Entries are live session objects, so the store must be in-process.
   */
  store?: SessionStore<AtlsSessionEntry>;
  /** Idle lifetime of an established session in ms (default 1 hour). */
  ttl?: number;
  /** Prefix of session cookie values (`<tag>.<random>`), for load balancers. */
  routingTag?: string;
  /**
   * Reverse proxies (addresses or CIDR ranges) whose `Forwarded` /
   * `X-Forwarded-For` name the client for fairness limits and logs; nobody
   * else's are believed (default: none).
   */
  trustedProxies?: readonly string[];
  /** TLS engine (default: the best available). */
  engine?: TlsEngine;
  /** Further session options (flight cap, protection window). */
  session?: Omit<SessionOptions, 'engine' | 'mode'>;
  /** Mark the cookie Secure: `auto` (default) when the request URL is https. */
  secureCookie?: boolean | 'auto';
  /**
   * The certificate(s) this service's own transport TLS presents (PEM). A
   * client's transport report naming another leaf is an interception; without
   * them, a chain the client could not verify is (docs/protocol.md §5.11).
   */
  transportCertificates?: string | string[];
  onEvent?: (event: AtlsServerEvent) => void;
}

/** Counters of a handler's session table. */
export interface AtlsHandlerStats {
  /** Sessions held; undefined when a custom store cannot tell. */
  sessions: number | undefined;
  /** Handshakes in progress. */
  halfOpen: number;
  /** Sessions whose client reported an intercepted transport, by the issuer of the certificate it was shown. */
  intercepted: Record<string, number>;
}

/** The handler: a Web-standard request handler plus a little introspection. */
export interface AtlsHandler {
  (request: Request): Promise<Response>;
  /** The byte-level core behind the Web handler and `atlsNodeListener`; never rejects. */
  serve(request: AtlsRawRequest): Promise<AtlsRawReply>;
  /** True when `pathname` is one of the ATLS endpoints. */
  matches(pathname: string): boolean;
  stats(): AtlsHandlerStats;
  /** Release the store (the default one drops every session); the handler must not be used afterwards. */
  close(): Promise<void>;
}

/** One server-side session and what the binding knows about it (the value a store holds). */
export interface AtlsSessionEntry {
  readonly id: string;
  readonly session: AtlsServerSession;
  /** Set when the handshake completed. */
  peer: AtlsPeer | undefined;
  /** A flight (or records-mode request) of this session is being processed. */
  busy: boolean;
  /** The last flight sent was a HelloRetryRequest: the client's second ClientHello belongs to this session. */
  awaitingHello?: boolean;
}

/**
 * The binding's view of the session store: TTLs (short while half-open,
 * longer once established, refreshed on use), the half-open cap (counted
 * here, whatever the store), and the total cap. An established
 * architecture-(b) session holds only its keys, counters and replay window
 * (the session released its TLS engine).
 */
class SessionTable {
  /** Half-open sessions by peer, oldest first; at maxHalfOpen the heaviest peer's oldest gives way. */
  private readonly halfOpenIds: HalfOpenLedger<Entry>;
  private readonly sync: boolean;

  constructor(
    private readonly store: SessionStore<Entry>,
    private readonly ownsStore: boolean,
    private readonly maxSessions: number,
    maxHalfOpen: number,
    private readonly handshakeTtl: number,
    private readonly sessionTtl: number,
    private readonly emit: (e: AtlsServerEvent) => void,
  ) {
    this.sync = isSyncStore(store);
    this.halfOpenIds = new HalfOpenLedger(maxHalfOpen, handshakeTtl);
  }

  /** Sessions held, when the store can tell (the default store can). */
  get size(): number | undefined {
    return this.store instanceof MemoryStore ? this.store.size : undefined;
  }

  get halfOpen(): number {
    return this.halfOpenIds.size;
  }

  async get(id: string): Promise<Entry | undefined> {
    const e = isSyncStore(this.store) ? this.store.getSync(id) : await this.store.get(id);
    return e && e.id === id ? e : undefined;
  }

  /** {@link get} without a promise when the store is synchronous (the default one is). */
  getNow(id: string): Entry | undefined | Promise<Entry | undefined> {
    if (!this.sync) return this.get(id);
    const e = (this.store as SyncSessionStore<Entry>).getSync(id);
    return e && e.id === id ? e : undefined;
  }

  /** {@link touch} without a promise when the store is synchronous. */
  touchNow(e: Entry): void | Promise<void> {
    if (!this.sync) return this.write(e);
    (this.store as SyncSessionStore<Entry>).setSync(e.id, e, e.peer ? this.sessionTtl : this.handshakeTtl);
  }

  /**
   * Admits a new half-open session of `peer` (its fairness group). At the
   * half-open cap older handshakes give way (see HalfOpenLedger); at the
   * session cap it throws LIMIT_REACHED (503).
   */
  async add(make: () => Entry, peer: string): Promise<Entry> {
    const size = this.size;
    if (size !== undefined && size >= this.maxSessions) {
      this.emit({ type: 'limit', limit: 'sessions', peer });
      this.emit({ type: 'refused', what: 'session', peer, reason: 'sessions' });
      throw new AtlsError('LIMIT_REACHED', `session limit (${this.maxSessions}) reached`);
    }
    const e = make();
    const displaced = this.halfOpenIds.admit(e.id, e, peer);
    if (displaced.length > 0) this.emit({ type: 'limit', limit: 'half-open', peer });
    for (const d of displaced) {
      void this.remove(d.value);
      this.emit({ type: 'evicted', what: 'half-open', peer: d.peer, reason: d.reason === 'expired' ? 'expired' : 'half-open' });
    }
    await this.write(e);
    return e;
  }

  /** The handshake completed: the entry stops counting as half-open and gets the session TTL. */
  async promote(e: Entry): Promise<void> {
    this.halfOpenIds.delete(e.id);
    await this.write(e);
  }

  /** Refreshes the TTL. */
  async touch(e: Entry): Promise<void> {
    await this.write(e);
  }

  async remove(e: Entry): Promise<void> {
    this.forget(e);
    if (isSyncStore(this.store)) this.store.deleteSync(e.id);
    else await this.store.delete(e.id);
  }

  /** The store let go of an entry (expiry, eviction, deletion): free its engine. */
  forget(e: Entry): void {
    this.halfOpenIds.delete(e.id);
    e.session.destroy();
  }

  async close(): Promise<void> {
    this.halfOpenIds.clear();
    if (this.ownsStore) await this.store.close?.();
  }

  private async write(e: Entry): Promise<void> {
    const ttl = e.peer ? this.sessionTtl : this.handshakeTtl;
    if (isSyncStore(this.store)) this.store.setSync(e.id, e, ttl);
    else await this.store.set(e.id, e, ttl);
  }
}

type Entry = AtlsSessionEntry;

const ACCEPT_POST = `${MEDIA_TYPE_FLIGHT}, ${MEDIA_TYPE_FLIGHT_LATER}, ${MEDIA_TYPE_PROTECTED}`;

/** The inner 500 a failing raw app becomes (the same bytes the Web path sends). */
const INTERNAL_ERROR_BHTTP = encodeResponse({ status: 500, content: new TextEncoder().encode('internal server error\n') });

/** The app context: `outer` is built on first read (the fast path has no `Request` otherwise). */
class LazyContext implements AtlsAppContext {
  private request: Request | undefined;
  constructor(private readonly x: AtlsRawRequest) {}
  get outer(): Request {
    return (this.request ??= this.x.outer());
  }
  get remoteAddress(): string | undefined {
    return this.x.remoteAddress;
  }
}

function contextOf(x: AtlsRawRequest): AtlsAppContext {
  return new LazyContext(x);
}

/**
 * Decodes the inner request for a raw app, holding it to the rules the fetch
 * conversion (bhttpToRequest) enforces where they are about the message, not about fetch.
 */
function rawInner(plaintext: Uint8Array, scheme: string, authority: string, limits: BhttpLimits): BhttpRequest {
  const what = 'binary HTTP request';
  const m = decodeRequest(plaintext, limits); // RFC 9292: exactly one known-length request
  if (m.scheme === '') m.scheme = scheme;
  if (m.authority === '') {
    let host: string | undefined;
    for (const [n, v] of m.headers) {
      if (n !== 'host') continue;
      if (host !== undefined) throw new AtlsError('MALFORMED_MESSAGE', `${what}: several host fields`, { source: 'remote' });
      host = v;
    }
    const a = host ?? authority;
    // The host field (or outer Host) was only checked as a field value: hold it to the authority rules.
    if (a === '' || !authorityValid(latin1Bytes(a) ?? new Uint8Array([0]))) {
      throw new AtlsError('MALFORMED_MESSAGE', `${what}: invalid or missing authority`, { source: 'remote' });
    }
    m.authority = a;
  }
  for (const [n, v] of m.headers) {
    // RFC 9110 §8.6 with RFC 9113 §8.1.1: a content-length that disagrees with the content is malformed.
    if (n === 'content-length' && v !== String(m.content.length)) {
      throw new AtlsError('MALFORMED_MESSAGE', `${what}: content-length ${v} but ${m.content.length} bytes of content`, { source: 'remote' });
    }
  }
  return m;
}

/** The flight starts with a HelloRetryRequest (RFC 8446 §4.1.4). */
function isHelloRetryRequest(flight: Uint8Array): boolean {
  if (flight.length === 0) return false;
  try {
    return parseServerHello(flight).isHelloRetryRequest;
  } catch {
    return false;
  }
}

function positive(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v <= 0) throw new AtlsError('INVALID_ARGUMENT', `${name} must be a positive number`);
  return v;
}

/**
 * Creates the ATLS endpoint handler. Requests to other paths get a plain 404
 * (mount it where only the endpoints reach it, or use the Hono middleware).
 * Every failure caused by a peer becomes a 4xx (503 for limits), never a 500.
 */
export function createAtlsHandler(options: AtlsHandlerOptions): AtlsHandler {
  const mode: Mode = options.mode ?? 'exported';
  checkServerCredentials(options.tls); // a key that does not match would fail every handshake, silently
  const endpoints = [...(options.endpoints ?? DEFAULT_ENDPOINTS)];
  for (const e of endpoints) {
    if (!e.startsWith('/')) throw new AtlsError('INVALID_ARGUMENT', `endpoint ${e} must start with "/"`);
  }
  if (options.routingTag !== undefined && !isValidRoutingTag(options.routingTag)) {
    throw new AtlsError('INVALID_ARGUMENT', 'routingTag must be 1..32 characters of [A-Za-z0-9_-]');
  }
  const rawApp = options.rawApp;
  const givenApp = options.app;
  if (!rawApp && !givenApp) throw new AtlsError('INVALID_ARGUMENT', 'give app or rawApp');
  const app: AtlsApp = givenApp ?? (() => new Response(null, { status: 500 }));
  const limits = options.limits ?? {};
  const maxBody = positive(limits.maxBodyBytes, DEFAULT_MAX_BODY_BYTES, 'limits.maxBodyBytes');
  // Inner content may be as large as the body allows (a larger limit raises Binary HTTP's default too).
  const contentLimits = { maxContent: Math.max(BHTTP_DEFAULT_LIMITS.maxContent, maxBody) };
  /** Events are built only when someone listens (a URL string and an object per request otherwise). */
  const listening = options.onEvent !== undefined;
  const emit = (ev: AtlsServerEvent): void => {
    try {
      options.onEvent?.(ev);
    } catch {
      // A logging hook must not break the protocol.
    }
  };
  const maxSessions = positive(limits.maxSessions, DEFAULT_MAX_SESSIONS, 'limits.maxSessions');
  // The default store evicts only as a backstop: the handler answers 503 at maxSessions first.
  const store =
    options.store ??
    new MemoryStore<Entry>({
      maxEntries: maxSessions + 1,
      onRemove: (id, e, reason) => {
        if (reason === 'replaced') return;
        table.forget(e);
        if (reason === 'expired' || reason === 'evicted') emit({ type: 'end', sessionId: id, reason });
      },
    });
  const table: SessionTable = new SessionTable(
    store,
    options.store === undefined,
    maxSessions,
    positive(limits.maxHalfOpen, DEFAULT_MAX_HALF_OPEN, 'limits.maxHalfOpen'),
    positive(limits.handshakeTtlMs, DEFAULT_HANDSHAKE_TTL_MS, 'limits.handshakeTtlMs'),
    positive(options.ttl, DEFAULT_SESSION_TTL_MS, 'ttl'),
    emit,
  );
  const trusted = new TrustedProxies(options.trustedProxies);
  /** The client's address: the socket's, or behind a trusted proxy the one it reports. */
  const clientAddress = (x: AtlsRawRequest): string | undefined =>
    trusted.size === 0
      ? x.remoteAddress
      : trusted.clientAddress(x.remoteAddress, { forwarded: x.header('forwarded'), xForwardedFor: x.header('x-forwarded-for') });
  // One options object shared by every session (sessions keep a reference; a copy each cost ~60 B per session).
  const sessionOptions: SessionOptions & { tls: TlsServerConfig } = {
    ...options.session,
    mode,
    ...(options.engine ? { engine: options.engine } : {}),
    tls: options.tls,
  };

  const ownTransport = (options.transportCertificates === undefined
    ? []
    : Array.isArray(options.transportCertificates) ? options.transportCertificates : [options.transportCertificates]
  ).map((pem) => new Uint8Array(new X509Certificate(pem).raw));
  const intercepted = new Map<string, number>();

  /** Takes the transport report out of an inner request's fields and keeps it with the peer, once per session. */
  function takeReport(get: (name: string) => string | null | undefined, peer: AtlsPeer): void {
    const report = parseTransportReport(get(HEADER_TRANSPORT_CHAIN), get(HEADER_TRANSPORT_VERIFIED), ownTransport);
    if (!report || peer.transport) return;
    peer.transport = report;
    if (report.intercepted) {
      const issuer = report.issuer ?? '(no certificate)';
      // Bounded: a new issuer beyond 1000 counts under one bucket.
      const key = intercepted.has(issuer) || intercepted.size < 1000 ? issuer : '(other)';
      intercepted.set(key, (intercepted.get(key) ?? 0) + 1);
    }
    emit({ type: 'transport', peer, report });
  }

  /** Runs one inner request through the application; the app's failures become an inner 500. */
  async function dispatch(plaintext: Uint8Array, peer: AtlsPeer, x: AtlsRawRequest): Promise<Uint8Array> {
    const scheme = x.https ? 'https' : 'http';
    if (rawApp) return dispatchRaw(rawApp, plaintext, peer, x, scheme);
    // RFC 9292: the plaintext is exactly one known-length request; a bad one is the peer's fault (400).
    const inner = bhttpToRequest(plaintext, { scheme, authority: x.authority }, contentLimits);
    if (inner.headers.has(HEADER_TRANSPORT_VERIFIED) || inner.headers.has(HEADER_TRANSPORT_CHAIN)) {
      takeReport((n) => inner.headers.get(n), peer);
      inner.headers.delete(HEADER_TRANSPORT_CHAIN);
      inner.headers.delete(HEADER_TRANSPORT_VERIFIED);
    }
    let res: Response;
    try {
      res = await app(inner, peer, contextOf(x));
      if (!res || typeof res.status !== 'number' || !res.headers) throw new TypeError('the app did not return a Response');
    } catch (error) {
      emit({ type: 'app-error', peer, error });
      res = new Response('internal server error\n', { status: 500, headers: { 'content-type': 'text/plain' } });
    }
    if (listening) emit({ type: 'request', peer, method: inner.method, url: inner.url, status: res.status });
    try {
      return await responseToBhttp(res, contentLimits);
    } catch (error) {
      emit({ type: 'app-error', peer, error });
      return responseToBhttp(new Response('internal server error\n', { status: 500 }));
    }
  }

  /** The same for a raw application: no fetch objects on either side. */
  async function dispatchRaw(
    raw: AtlsRawApp,
    plaintext: Uint8Array,
    peer: AtlsPeer,
    x: AtlsRawRequest,
    scheme: string,
  ): Promise<Uint8Array> {
    const inner = rawInner(plaintext, scheme, x.authority, contentLimits);
    if (inner.headers.some(([n]) => n === HEADER_TRANSPORT_CHAIN || n === HEADER_TRANSPORT_VERIFIED)) {
      takeReport((name) => inner.headers.find(([n]) => n === name)?.[1], peer);
      inner.headers = inner.headers.filter(([n]) => n !== HEADER_TRANSPORT_CHAIN && n !== HEADER_TRANSPORT_VERIFIED);
    }
    let status: number;
    let encoded: Uint8Array;
    try {
      const res = await raw(inner, peer, contextOf(x));
      encoded = encodeResponse(res); // RFC 9292 §3.5: a final status 200..599, valid fields
      status = res.status;
    } catch (error) {
      emit({ type: 'app-error', peer, error });
      status = 500;
      encoded = INTERNAL_ERROR_BHTTP;
    }
    if (listening) emit({ type: 'request', peer, method: inner.method, url: `${inner.scheme}://${inner.authority}${inner.path}`, status });
    return encoded;
  }

  function end(e: Entry, reason: 'closed' | 'failed' | 'replaced'): void {
    void table.remove(e);
    emit({ type: 'end', sessionId: e.id, reason });
  }

  /** A body of flight type: handshake flights, and in mode `records` also requests. */
  async function onFlight(e: Entry, body: Uint8Array, x: AtlsRawRequest): Promise<AtlsRawReply> {
    if (e.busy) {
      // One flight per session at a time: TLS records are sequenced (decisions.md: 409, not a queue).
      throw new AtlsError('INVALID_STATE', 'another request of this ATLS session is in progress', { source: 'remote' });
    }
    e.busy = true;
    try {
      let flight = body;
      let piggyBacked: Uint8Array | undefined;
      const lengthHeader = x.header(HEADER_FLIGHT_LENGTH);
      if (lengthHeader !== null && lengthHeader !== undefined) {
        if (mode !== 'exported') {
          throw new AtlsError('MALFORMED_MESSAGE', `${HEADER_FLIGHT_LENGTH} is for mode "exported"`, { source: 'remote' });
        }
        const n = parseFlightLength(lengthHeader, body.length);
        flight = body.subarray(0, n);
        piggyBacked = body.subarray(n);
        if (piggyBacked.length === 0) {
          throw new AtlsError('MALFORMED_MESSAGE', `${HEADER_FLIGHT_LENGTH} given but no protected message follows`, {
            source: 'remote',
          });
        }
      }
      const step = await e.session.receive(flight);
      let out = step.flight;
      const data: Uint8Array[] = [];
      let closed = false;
      for (const ev of step.events) {
        if (ev.type === 'handshake') {
          e.peer = peerFromHandshake(e.id, mode, ev.info);
          await table.promote(e);
          if (listening) emit({ type: 'handshake', peer: e.peer, address: clientAddress(x) });
        } else if (ev.type === 'data') {
          data.push(ev.data);
        } else if (ev.type === 'closed') {
          closed = true;
        }
      }
      const requestType = mediaType(x.header('content-type'));
      const headers: Array<[string, string]> = [
        ['cache-control', NO_STORE['cache-control']],
        ['content-type', requestType === MEDIA_TYPE_FLIGHT_LATER ? MEDIA_TYPE_FLIGHT_LATER : MEDIA_TYPE_FLIGHT],
      ];
      if (data.length > 0 && e.session.mode !== 'records') {
        // Architecture (b) takes requests only as protected messages: refuse
        // before the app runs a request this session could not answer.
        throw new AtlsError('INVALID_STATE', `this endpoint runs mode "exported": send requests as ${MEDIA_TYPE_PROTECTED}`, {
          source: 'remote',
        });
      }
      if (data.length > 0 && e.peer && !closed) {
        // Architecture (a): the records' plaintext is one inner request (draft Figure 5).
        const response = await dispatch(concatBytes(data), e.peer, x);
        out = concatBytes([out, await e.session.send(response)]);
      } else if (piggyBacked) {
        if (!e.peer) {
          throw new AtlsError('MALFORMED_MESSAGE', 'a protected message rode with a flight that did not finish the handshake', {
            source: 'remote',
          });
        }
        let response: Uint8Array;
        try {
          response = await dispatch(e.session.unprotect(piggyBacked), e.peer, x);
        } catch (err) {
          // docs/protocol.md §5.6: an error answer cannot carry our final
          // flight, so the client never sees the handshake confirmed and fails
          // its session (§5.9); this end forgets it too, and the cookie goes.
          end(e, 'failed');
          throw err;
        }
        headers.push([HEADER_FLIGHT_LENGTH, String(out.length)]);
        out = concatBytes([out, e.session.protect(response)]);
      }
      if (!e.peer) e.awaitingHello = isHelloRetryRequest(out);
      if (listening) emit({ type: 'flight', sessionId: e.id, received: body.length, sent: out.length, state: e.session.state });
      if (closed || e.session.state === 'closed') end(e, 'closed');
      else await table.touch(e);
      return { status: 200, headers, body: out };
    } catch (err) {
      if (e.session.state === 'failed' || e.session.state === 'closed') end(e, 'failed');
      throw err;
    } finally {
      e.busy = false;
    }
  }

  /** A body of protected type: one inner request of an established architecture-(b) session. */
  async function onProtected(e: Entry, body: Uint8Array, x: AtlsRawRequest): Promise<AtlsRawReply> {
    if (e.session.mode !== 'exported') {
      throw new HttpRefusal(415, `this session runs mode "records": send ${MEDIA_TYPE_FLIGHT}`, [['accept-post', MEDIA_TYPE_FLIGHT]]);
    }
    const peer = e.peer;
    if (!peer) throw new AtlsError('NOT_ESTABLISHED', 'the handshake of this session is not complete', { source: 'remote' });
    try {
      const plaintext = e.session.unprotect(body);
      const response = rawApp ? await dispatchRaw(rawApp, plaintext, peer, x, x.https ? 'https' : 'http') : await dispatch(plaintext, peer, x);
      const sealed = e.session.protect(response);
      const touched = table.touchNow(e);
      if (touched) await touched;
      return { status: 200, headers: [['cache-control', NO_STORE['cache-control']], ['content-type', MEDIA_TYPE_PROTECTED]], body: sealed };
    } catch (err) {
      // Forged, replayed, old: that message only. Key limits end the session (410: handshake again).
      if (e.session.state === 'failed' || (err instanceof AtlsError && err.code === 'KEY_LIMIT_REACHED')) end(e, 'failed');
      throw err;
    }
  }

  const gone = (): AtlsError =>
    new AtlsError('CLOSED', 'unknown or expired ATLS session: handshake again', { source: 'remote' });

  /** The byte-level core: every front (Web, node:http) ends here. Never throws. */
  const serve = async (x: AtlsRawRequest): Promise<AtlsRawReply> => {
    if (!listening) return serveOnce(x);
    const start = performance.now();
    const reply = await serveOnce(x);
    emit({ type: 'reply', status: reply.status, ms: performance.now() - start });
    return reply;
  };

  const serveOnce = async (x: AtlsRawRequest): Promise<AtlsRawReply> => {
    const endpoint = x.pathname;
    if (!endpoints.includes(endpoint)) return errorReply(new HttpRefusal(404, 'not an ATLS endpoint'));
    const secure = options.secureCookie === undefined || options.secureCookie === 'auto' ? x.https : options.secureCookie;
    const cookieAttrs = { path: endpoint, secure };
    let id: string | undefined;
    let created: Entry | undefined;
    let known: Entry | undefined;
    try {
      if (x.method !== 'POST') {
        throw new HttpRefusal(405, 'ATLS endpoints accept POST only', [['allow', 'POST']]);
      }
      const kind = bodyKind(x.header('content-type'));
      if (!kind) throw new HttpRefusal(415, `expected ${ACCEPT_POST}`, [['accept-post', ACCEPT_POST]]);
      const body = await x.body(maxBody);
      id = readCookie(x.header('cookie'), COOKIE_NAME);
      if (id !== undefined && parseSessionId(id)) {
        const got = table.getNow(id);
        known = got instanceof Promise ? await got : got;
      }
      if (kind === 'protected') {
        if (!known) throw gone();
        return await onProtected(known, body, x);
      }
      if (known) {
        const established = known.session.mode === 'exported' && known.peer !== undefined;
        const hello = startsWithClientHello(body);
        if (!established && (!hello || known.awaitingHello)) return await onFlight(known, body, x);
        // An established architecture-(b) session takes no more flights.
        if (!hello) throw new AtlsError('INVALID_STATE', `session established: send ${MEDIA_TYPE_PROTECTED}`, { source: 'remote' });
        // A ClientHello with a session's cookie starts a new session beside
        // it: a cookie proves nothing of the keys, so it neither ends nor
        // replaces the session it names (that one goes on, or ages out).
        known = undefined;
      } else if (id !== undefined && !startsWithClientHello(body)) {
        throw gone();
      }
      const address = clientAddress(x);
      created = await table.add(
        () => ({
          id: newSessionId(options.routingTag),
          session: new AtlsServerSession(sessionOptions),
          peer: undefined,
          busy: false,
        }),
        peerGroup(address),
      );
      emit({ type: 'session', sessionId: created.id, address });
      const res = await onFlight(created, body, x);
      res.headers.push(['set-cookie', setCookie(COOKIE_NAME, created.id, cookieAttrs)]);
      return res;
    } catch (err) {
      const extra: Array<[string, string]> = [];
      // The client's cookie names nothing (any more): tell it to drop it.
      const lost = known ? (await table.get(known.id)) === undefined : id !== undefined && !created;
      if (lost && id !== undefined) extra.push(['set-cookie', setCookie(COOKIE_NAME, '', { ...cookieAttrs, maxAge: 0 })]);
      const res = errorReply(err, extra);
      if (err instanceof AtlsError && listening) {
        emit({ type: 'error', sessionId: created?.id ?? known?.id ?? id, error: err, status: res.status, address: clientAddress(x) });
      }
      return res;
    }
  };

  const handler = async (request: Request): Promise<Response> => {
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return errorResponse(new AtlsError('INVALID_ARGUMENT', 'unparsable request URL', { source: 'remote' }));
    }
    const headers = request.headers;
    const reply = await serve({
      method: request.method,
      pathname: url.pathname,
      header: (name) => headers.get(name),
      body: (max) => readBody(request.body, max, headers.get('content-length')),
      https: url.protocol === 'https:',
      authority: url.host,
      outer: () => request,
    });
    return replyToResponse(reply);
  };

  return Object.assign(handler, {
    serve,
    matches: (pathname: string) => endpoints.includes(pathname),
    stats: (): AtlsHandlerStats => ({ sessions: table.size, halfOpen: table.halfOpen, intercepted: Object.fromEntries(intercepted) }),
    close: () => table.close(),
  });
}
