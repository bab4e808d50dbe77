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
import type { Mode, SessionOptions } from '../session/types.js';
import { bhttpToRequest, responseToBhttp } from '../bhttp/web.js';
import { decodeRequest, encodeResponse, limitsOf, type BhttpLimits, type BhttpRequest, type BhttpResponseInit } from '../bhttp/codec.js';
import { authorityStringValid } from '../bhttp/fields.js';
import { concatBytes, pooledBytes } from '../bytes.js';
import { bhttpStreamToRequest, responseToBhttpStream } from '../bhttp/web.js';
import { MAX_CHUNK_PLAINTEXT, protectBody, startsChunkStream } from '../protect/index.js';
import { readLimited } from '../streams.js';
import {
  EngineQueue,
  failOnError,
  openRequestChunks,
  prepend,
  readOrTruncated,
  RecordsIn,
  settle,
  streamOfBytes,
  watched,
  type ReadResult,
} from './streaming.js';
import {
  COOKIE_NAME,
  DEFAULT_ENDPOINTS,
  DEFAULT_MAX_BODY_BYTES,
  HEADER_EARLY_DATA,
  HEADER_FLIGHT_LENGTH,
  MEDIA_TYPE_FLIGHT,
  MEDIA_TYPE_FLIGHT_LATER,
  MEDIA_TYPE_PROTECTED,
} from './constants.js';
import { readCookie, setCookie, type CookieAttributes } from './cookie.js';
import type { IdOwner, SessionStateStore } from '../store/index.js';
import { EndpointCore, LiveSession, type AcceptedMessage, type EstablishedSession, type FoundSession } from '../endpoint/core.js';
import { ENDPOINT_DEFAULTS } from '../endpoint/defaults.js';
import { ClientHelloRecord } from '../store/hello-record.js';
import { TrustedProxies, peerGroup } from '../peers.js';
import type { AtlsPeer } from './peer.js';
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
   * A front that already holds the whole body may return it (or throw) at once:
   * the core then takes a protected request without a promise.
   */
  body(max: number): Uint8Array | Promise<Uint8Array>;
  /**
   * The body as a stream, read as it arrives (chunk streams, records-mode
   * data): called at most once, instead of `body`. Fronts that cannot stream
   * (a relayed flight) leave it out, and such bodies are read whole.
   */
  stream?(): ReadableStream<Uint8Array>;
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
  /**
   * Largest inner request content, streamed or not (413 above; default
   * 1 GiB: a streamed body is never held whole).
   */
  maxBodyBytes?: number;
  /**
   * Largest body read whole: a handshake flight, one protected message, a
   * records-mode flight that cannot stream (413 above; default 1 MiB, or
   * min(maxBodyBytes, 16 MiB) when maxBodyBytes is given).
   */
  maxWholeBodyBytes?: number;
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
  | { type: 'end'; sessionId: string; reason: 'closed' | 'failed' | 'replaced' | 'expired' | 'evicted' | 'deleted' }
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
  /** A raw inner application; when given it is used instead of `app` (see {@link AtlsRawApp}). It takes each request whole, at most `limits.maxWholeBodyBytes` (413 above). */
  rawApp?: AtlsRawApp;
  /** `exported` (architecture b, default) or `records` (architecture a). */
  mode?: Mode;
  /** Endpoint paths answered (default `/.well-known/atls` and `/atls`). */
  endpoints?: readonly string[];
  limits?: AtlsHandlerLimits;
  /**
   * Where established architecture-(b) sessions live as plain state (default:
   * in memory, sized by `limits.maxSessions`). A shared store (Redis) lets
   * several processes answer one session. Half-open handshakes and records-mode
   * sessions stay in this process (they hold a TLS engine).
   */
  store?: SessionStateStore;
  /** Idle lifetime of an established session in ms (default 1 hour). */
  ttl?: number;
  /** Prefix of session cookie values (`<tag>.<random>`), for load balancers. */
  routingTag?: string;
  /** This process among several minting ids (`atls serve --workers`; see `sessionOwner`). */
  idOwner?: IdOwner;
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
  /**
   * {@link serve} for a request whose whole body the caller holds (`body`, what `request.body()` would
   * give): the reply itself, with no promise on the way, when all of it is synchronous (a protected message
   * of an established session in an in-process store, a synchronous raw app); otherwise serve()'s promise.
   * Never throws.
   */
  serveHeld(request: AtlsRawRequest, body: Uint8Array): AtlsRawReply | Promise<AtlsRawReply>;
  /** True when `pathname` is one of the ATLS endpoints. */
  matches(pathname: string): boolean;
  stats(): AtlsHandlerStats;
  /** Release the store (the default one drops every session); the handler must not be used afterwards. */
  close(): Promise<void>;
}

const EMPTY = new Uint8Array(0);

/** Default largest inner content when bodies stream: 1 GiB. */
export const DEFAULT_MAX_STREAMED_BODY_BYTES = 1024 * 1024 * 1024;
/** Ceiling of the whole-body cap derived from maxBodyBytes: 16 MiB (what clients sent as one message before streaming). */
const MAX_WHOLE_BODY_BYTES = 16 * 1024 * 1024;

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

function isThenable<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}

/** A sealed answer: one protected message, or a chunk stream. */
type Answer = Uint8Array | ReadableStream<Uint8Array>;

/** The field lines of every answer to a protected message: one array shared by all of them, never changed. */
const PROTECTED_REPLY_HEADERS = Object.freeze([
  Object.freeze(['cache-control', NO_STORE['cache-control']]),
  Object.freeze(['content-type', MEDIA_TYPE_PROTECTED]),
]) as unknown as Array<[string, string]>;

function protectedReply(sealed: Answer): AtlsRawReply {
  return { status: 200, headers: PROTECTED_REPLY_HEADERS, body: sealed };
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
    if (a === '' || !authorityStringValid(a)) {
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

/** The inner request carries a transport report (a loop: no closure per request). */
function carriesTransportReport(headers: BhttpRequest['headers']): boolean {
  for (const [n] of headers) if (n === HEADER_TRANSPORT_CHAIN || n === HEADER_TRANSPORT_VERIFIED) return true;
  return false;
}

function positive(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v <= 0) throw new AtlsError('INVALID_ARGUMENT', `${name} must be a positive number`);
  return v;
}

/**
 * The largest body a handler with these limits reads whole (a flight, one protected message, a small
 * request: held in memory, so its own, smaller cap); a longer declared body streams when the front can.
 */
export function wholeBodyCap(limits: AtlsHandlerLimits = {}): number {
  const maxBody = positive(limits.maxBodyBytes, DEFAULT_MAX_STREAMED_BODY_BYTES, 'limits.maxBodyBytes');
  return positive(
    limits.maxWholeBodyBytes,
    limits.maxBodyBytes === undefined ? DEFAULT_MAX_BODY_BYTES : Math.min(maxBody, MAX_WHOLE_BODY_BYTES),
    'limits.maxWholeBodyBytes',
  );
}

/**
 * Creates the ATLS endpoint handler. Requests to other paths get a plain 404
 * (mount it where only the endpoints reach it, or use the Hono middleware).
 * Every failure caused by a peer becomes a 4xx (503 for limits), never a 500.
 */
export function createAtlsHandler(options: AtlsHandlerOptions): AtlsHandler {
  const mode: Mode = options.mode ?? 'exported';
  const endpoints = [...(options.endpoints ?? DEFAULT_ENDPOINTS)];
  for (const e of endpoints) {
    if (!e.startsWith('/')) throw new AtlsError('INVALID_ARGUMENT', `endpoint ${e} must start with "/"`);
  }
  const rawApp = options.rawApp;
  const givenApp = options.app;
  if (!rawApp && !givenApp) throw new AtlsError('INVALID_ARGUMENT', 'give app or rawApp');
  const app: AtlsApp = givenApp ?? (() => new Response(null, { status: 500 }));
  const limits = options.limits ?? {};
  // Inner content, streamed or not (decisions.md: bodies that stream keep memory bounded, so the default is large).
  const maxBody = positive(limits.maxBodyBytes, DEFAULT_MAX_STREAMED_BODY_BYTES, 'limits.maxBodyBytes');
  const maxWhole = wholeBodyCap(limits);
  const contentLimits = limitsOf({ maxContent: maxBody }); // complete: decoding builds no limits object per request
  /** Largest answer at hand sent as one protected message: what this end reads whole itself, at most 16 MiB. */
  const maxSingle = Math.min(maxWhole, MAX_WHOLE_BODY_BYTES);
  /** The body is read as it arrives: the front can, and it is not declared small enough to read whole. */
  const streams = (x: AtlsRawRequest): boolean => {
    if (x.stream === undefined) return false;
    const declared = x.header('content-length');
    return declared === null || declared === undefined || !(Number(declared) <= maxWhole);
  };
  /** Events are built only when someone listens (a URL string and an object per request otherwise). */
  const listening = options.onEvent !== undefined;
  const emit = (ev: AtlsServerEvent): void => {
    try {
      options.onEvent?.(ev);
    } catch {
      // A logging hook must not break the protocol.
    }
  };
  const core = new EndpointCore({
    tls: options.tls,
    mode,
    ...(options.engine ? { engine: options.engine } : {}),
    ...(options.session ? { session: options.session } : {}),
    ...(options.store ? { store: options.store } : {}),
    ...(options.routingTag !== undefined ? { routingTag: options.routingTag } : {}),
    ...(options.idOwner !== undefined ? { idOwner: options.idOwner } : {}),
    ...(limits.maxSessions !== undefined ? { maxSessions: limits.maxSessions } : {}),
    ...(limits.maxHalfOpen !== undefined ? { maxHalfOpen: limits.maxHalfOpen } : {}),
    ...(limits.handshakeTtlMs !== undefined ? { handshakeTtlMs: limits.handshakeTtlMs } : {}),
    ...(options.ttl !== undefined ? { sessionTtlMs: options.ttl } : {}),
    whenBusy: 'refuse',
    onEnd: (sessionId, reason) => emit({ type: 'end', sessionId, reason }),
    onLimit: emit,
  });
  const trusted = new TrustedProxies(options.trustedProxies);
  const hellos = new ClientHelloRecord(limits.handshakeTtlMs ?? ENDPOINT_DEFAULTS.handshakeTtlMs);
  /** The client's address: the socket's, or behind a trusted proxy the one it reports. */
  const clientAddress = (x: AtlsRawRequest): string | undefined =>
    trusted.size === 0
      ? x.remoteAddress
      : trusted.clientAddress(x.remoteAddress, { forwarded: x.header('forwarded'), xForwardedFor: x.header('x-forwarded-for') });

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
    core.keepPeer(peer); // the report lives with this process's view of the session, not in the store
    if (report.intercepted) {
      const issuer = report.issuer ?? '(no certificate)';
      // Bounded: a new issuer beyond 1000 counts under one bucket.
      const key = intercepted.has(issuer) || intercepted.size < 1000 ? issuer : '(other)';
      intercepted.set(key, (intercepted.get(key) ?? 0) + 1);
    }
    emit({ type: 'transport', peer, report });
  }

  /** The fetch `Request` of a whole inner request, with the transport report taken out. */
  function innerOf(plaintext: Uint8Array, peer: AtlsPeer, x: AtlsRawRequest): Request {
    // RFC 9292: the plaintext is exactly one known-length request; a bad one is the peer's fault (400).
    return withoutReport(bhttpToRequest(plaintext, { scheme: x.https ? 'https' : 'http', authority: x.authority }, contentLimits), peer);
  }

  function withoutReport(inner: Request, peer: AtlsPeer): Request {
    if (inner.headers.has(HEADER_TRANSPORT_VERIFIED) || inner.headers.has(HEADER_TRANSPORT_CHAIN)) {
      takeReport((n) => inner.headers.get(n), peer);
      inner.headers.delete(HEADER_TRANSPORT_CHAIN);
      inner.headers.delete(HEADER_TRANSPORT_VERIFIED);
    }
    return inner;
  }

  /**
   * Runs one inner request through the application; its answer as Binary
   * HTTP bytes as they are produced (RFC 9292 §3.2 when the body is large
   * or slow; otherwise the known-length form, byte for byte what a whole
   * answer always was). The app's failures become an inner 500.
   */
  async function answerOf(inner: Request, peer: AtlsPeer, x: AtlsRawRequest): Promise<ReadableStream<Uint8Array>> {
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
      return responseToBhttpStream(res);
    } catch (error) {
      emit({ type: 'app-error', peer, error });
      await res.body?.cancel().catch(() => undefined);
      return streamOfBytes(await responseToBhttp(new Response('internal server error\n', { status: 500 })));
    }
  }

  /** A whole inner request: the raw app's answer as bytes, the fetch app's as a stream. */
  /** `early`: the request came as TLS 1.3 early data; the app sees `Early-Data: 1` (RFC 8470 §5.1) and may answer 425. */
  async function dispatch(plaintext: Uint8Array, peer: AtlsPeer, x: AtlsRawRequest, early = false): Promise<Uint8Array | ReadableStream<Uint8Array>> {
    if (rawApp) return dispatchRaw(rawApp, plaintext, peer, x, early);
    const inner = innerOf(plaintext, peer, x);
    if (early) inner.headers.set(HEADER_EARLY_DATA, '1');
    return answerOf(inner, peer, x);
  }

  /**
   * A streamed inner request (its plaintext arriving as a stream): a raw
   * app gets it whole (at most the whole-body cap: docs/decisions.md "Raw
   * apps take requests whole"), a fetch app as a `Request` whose body streams.
   */
  async function dispatchStreamed(
    plaintext: ReadableStream<Uint8Array>,
    peer: AtlsPeer,
    x: AtlsRawRequest,
  ): Promise<Uint8Array | ReadableStream<Uint8Array>> {
    if (rawApp) return dispatchRaw(rawApp, await wholeForRaw(plaintext), peer, x);
    const inner = await bhttpStreamToRequest(plaintext, { scheme: x.https ? 'https' : 'http', authority: x.authority }, contentLimits);
    return answerOf(withoutReport(inner, peer), peer, x);
  }

  /** A streamed inner request read whole for a raw app; over the whole-body cap a 413 that names it. */
  async function wholeForRaw(plaintext: ReadableStream<Uint8Array>): Promise<Uint8Array> {
    try {
      return await readLimited(plaintext, maxWhole, 'remote');
    } catch (e) {
      if (!(e instanceof AtlsError && e.code === 'TOO_LARGE')) throw e;
      throw new AtlsError('TOO_LARGE', `request over ${maxWhole} bytes: this server's raw app takes requests whole (limits.maxWholeBodyBytes)`, { source: 'remote' });
    }
  }

  /**
   * The same for a raw application: no fetch objects on either side, and no
   * promise when the app answers synchronously (as `echoRawApp` does).
   */
  function dispatchRaw(raw: AtlsRawApp, plaintext: Uint8Array, peer: AtlsPeer, x: AtlsRawRequest, early = false): Uint8Array | Promise<Uint8Array> {
    const inner = rawInner(plaintext, x.https ? 'https' : 'http', x.authority, contentLimits);
    if (carriesTransportReport(inner.headers)) {
      takeReport((name) => inner.headers.find(([n]) => n === name)?.[1], peer);
      inner.headers = inner.headers.filter(([n]) => n !== HEADER_TRANSPORT_CHAIN && n !== HEADER_TRANSPORT_VERIFIED);
    }
    if (early) inner.headers = [...inner.headers.filter(([n]) => n !== HEADER_EARLY_DATA), [HEADER_EARLY_DATA, '1']];
    let res: BhttpResponseInit | Promise<BhttpResponseInit>;
    try {
      res = raw(inner, peer, contextOf(x));
    } catch (error) {
      return rawFailed(peer, inner, error);
    }
    if (isThenable(res)) {
      return Promise.resolve(res).then(
        (r) => encodeRaw(peer, inner, r),
        (error: unknown) => rawFailed(peer, inner, error),
      );
    }
    return encodeRaw(peer, inner, res);
  }

  /** A raw app's answer as Binary HTTP; one it got wrong becomes the inner 500. */
  function encodeRaw(peer: AtlsPeer, inner: BhttpRequest, res: BhttpResponseInit): Uint8Array {
    let encoded: Uint8Array;
    try {
      // RFC 9292 §3.5: a final status 200..599, valid fields. Pooled: sealed or encrypted and dropped before the app sees it again.
      encoded = encodeResponse(res, undefined, pooledBytes);
    } catch (error) {
      return rawFailed(peer, inner, error);
    }
    if (listening) emit({ type: 'request', peer, method: inner.method, url: `${inner.scheme}://${inner.authority}${inner.path}`, status: res.status });
    return encoded;
  }

  function rawFailed(peer: AtlsPeer, inner: BhttpRequest, error: unknown): Uint8Array {
    emit({ type: 'app-error', peer, error });
    if (listening) emit({ type: 'request', peer, method: inner.method, url: `${inner.scheme}://${inner.authority}${inner.path}`, status: 500 });
    return INTERNAL_ERROR_BHTTP;
  }

  /** A body of flight type: handshake flights, and in mode `records` also requests. */
  async function onFlight(live: LiveSession, body: Uint8Array, x: AtlsRawRequest): Promise<AtlsRawReply> {
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
    const step = await core.flight(live, flight);
    let out = step.flight;
    if (step.handshake && listening) {
      const p = step.established?.peer ?? live.peer;
      if (p) emit({ type: 'handshake', peer: p, address: clientAddress(x) });
    }
    // Records mode: the live session's peer (an exported session's peer is built only when asked for).
    const peer = live.peer;
    const requestType = mediaType(x.header('content-type'));
    const headers: Array<[string, string]> = [
      ['cache-control', NO_STORE['cache-control']],
      ['content-type', requestType === MEDIA_TYPE_FLIGHT_LATER ? MEDIA_TYPE_FLIGHT_LATER : MEDIA_TYPE_FLIGHT],
    ];
    if (step.data.length > 0 && mode !== 'records') {
      // Architecture (b) takes requests only as protected messages: refuse
      // before the app runs a request this session could not answer.
      throw new AtlsError('INVALID_STATE', `this endpoint runs mode "exported": send requests as ${MEDIA_TYPE_PROTECTED}`, {
        source: 'remote',
      });
    }
    if (step.early && peer && !step.closed) {
      // A request that came as early data, served now that the handshake completed; its answer
      // leads the records of this reply (the client sends no request with this flight then).
      const response = await dispatch(step.early, peer, x, true);
      const bytes = response instanceof Uint8Array ? response : await readBody(response, maxWhole);
      out = concatBytes([out, await core.sendRecords(live, bytes)]);
    }
    if (step.data.length > 0 && peer && !step.closed) {
      // Architecture (a): the records' plaintext is one inner request (draft Figure 5).
      const response = await dispatch(concatBytes(step.data), peer, x);
      if (response instanceof Uint8Array) out = concatBytes([out, await core.sendRecords(live, response)]);
      else return { status: 200, headers, body: await recordsAnswer(live, response, new EngineQueue(), out) };
    } else if (piggyBacked) {
      if (!step.established) {
        throw new AtlsError('MALFORMED_MESSAGE', 'a protected message rode with a flight that did not finish the handshake', {
          source: 'remote',
        });
      }
      let sealed: Uint8Array | ReadableStream<Uint8Array>;
      try {
        sealed = await answerProtected(step.established, piggyBacked, x);
      } catch (err) {
        // docs/protocol.md §5.6: an error answer cannot carry our final
        // flight, so the client never sees the handshake confirmed and fails
        // its session (§5.9); this end forgets it too, and the cookie goes.
        await core.end(step.established, 'failed');
        throw err;
      }
      headers.push([HEADER_FLIGHT_LENGTH, String(out.length)]);
      if (!(sealed instanceof Uint8Array)) return { status: 200, headers, body: prepend(out, sealed.getReader()) };
      out = concatBytes([out, sealed]);
    }
    if (listening) emit({ type: 'flight', sessionId: live.id, received: body.length, sent: out.length, state: live.session.state });
    return { status: 200, headers, body: out };
  }

  /**
   * One protected message of an established architecture-(b) session (or a
   * chunk stream held whole): its sealed answer, one message as bytes or a
   * chunk stream.
   */
  function answerProtected(s: EstablishedSession, body: Uint8Array, x: AtlsRawRequest): Answer | Promise<Answer> {
    if (body.length > 0 && startsChunkStream(body[0]!)) return answerChunks(s, streamOfBytes(body), x);
    // No promise on the way with an in-process store and a synchronous raw app.
    const accepted = core.accept(s, body);
    if (accepted instanceof Promise) return accepted.then((a) => answerAccepted(s, a, x));
    return answerAccepted(s, accepted, x);
  }

  function answerAccepted(s: EstablishedSession, a: AcceptedMessage, x: AtlsRawRequest): Answer | Promise<Answer> {
    const response = rawApp ? dispatchRaw(rawApp, a.plaintext, s.peer, x) : dispatch(a.plaintext, s.peer, x);
    if (response instanceof Promise) return response.then((r) => sealResponse(s, a.sendSeq, r));
    return sealResponse(s, a.sendSeq, response);
  }

  /**
   * An answer at hand goes out as one protected message up to the whole-body
   * cap (decisions.md, "One message or a chunk stream"): it is already held
   * whole, and one seal costs far less than a chunk stream.
   */
  function oneMessage(s: EstablishedSession, response: Answer): response is Uint8Array {
    return response instanceof Uint8Array && (response.length <= MAX_CHUNK_PLAINTEXT || (response.length <= maxSingle && response.length <= s.channel.maxPlaintextLength));
  }

  /** One message when the answer is at hand (up to the cap), else a chunk stream. */
  function sealResponse(s: EstablishedSession, sendSeq: number, response: Answer): Answer | Promise<Answer> {
    if (oneMessage(s, response)) return core.seal(s, sendSeq, response);
    return sealAnswer(s, sendSeq, response instanceof Uint8Array ? streamOfBytes(response) : response);
  }

  /**
   * The answer sealed under numbers of the store (docs/protocol.md §4.1,
   * §7.3): one message (bytes) when small and at hand, else a chunk stream.
   * `failed` is asked before each piece: a request body that failed cuts the answer.
   */
  function sealAnswer(
    s: EstablishedSession,
    sendSeq: number,
    bhttp: ReadableStream<Uint8Array>,
    failed?: () => AtlsError | undefined,
  ): Promise<Uint8Array | ReadableStream<Uint8Array>> {
    const body = failed ? watched(bhttp, () => undefined, failed) : bhttp;
    // An indeterminate-length response (framing indicator 3) was not at hand: its head leaves at once.
    const sealed = protectBody(core.answerSealer(s, sendSeq), body, { streamAtOnce: (first) => first[0] === 3 });
    return settle(sealed, (first) => !startsChunkStream(first[0]!));
  }

  /**
   * A request body that is a chunk stream (docs/protocol.md §4.1): opened as
   * it arrives, its inner request dispatched while it streams, the answer
   * sealed under the number chunk 0's commit reserved. A failure of the
   * request body (cut short, reordered, forged, replayed, over --max-body)
   * before the answer started is the answer (4xx); after, it cuts the answer.
   */
  async function answerChunks(s: EstablishedSession, body: ReadableStream<Uint8Array>, x: AtlsRawRequest): Promise<Uint8Array | ReadableStream<Uint8Array>> {
    let sendSeq: number | undefined;
    let failure: AtlsError | undefined;
    const plain = failOnError(openRequestChunks(core, s, body, (n) => (sendSeq = n)), (e) => (failure ??= e));
    let response: Uint8Array | ReadableStream<Uint8Array>;
    try {
      response = await dispatchStreamed(plain, s.peer, x);
    } catch (e) {
      throw failure ?? e;
    }
    // The head came in chunk 0, so its commit ran before the app was called: sendSeq is set unless the body failed.
    if (failure !== undefined || sendSeq === undefined) {
      if (!(response instanceof Uint8Array)) await response.cancel().catch(() => undefined);
      throw failure ?? new AtlsError('MALFORMED_MESSAGE', 'protected stream without chunks', { source: 'remote' });
    }
    if (oneMessage(s, response)) return core.seal(s, sendSeq, response);
    return sealAnswer(s, sendSeq, response instanceof Uint8Array ? streamOfBytes(response) : response, () => failure);
  }

  /** A body of protected type. */
  function onProtected(found: FoundSession, body: Uint8Array, x: AtlsRawRequest): AtlsRawReply | Promise<AtlsRawReply> {
    if (found instanceof LiveSession) {
      if (found.session.mode !== 'exported') {
        throw new HttpRefusal(415, `this session runs mode "records": send ${MEDIA_TYPE_FLIGHT}`, [['accept-post', MEDIA_TYPE_FLIGHT]]);
      }
      throw new AtlsError('NOT_ESTABLISHED', 'the handshake of this session is not complete', { source: 'remote' });
    }
    const sealed = answerProtected(found, body, x);
    if (sealed instanceof Promise) return sealed.then(protectedReply);
    return protectedReply(sealed);
  }

  /** A protected body read as it arrives: a chunk stream opened chunk by chunk; one message read whole (at most `maxWhole`). */
  async function onProtectedStream(found: FoundSession, body: ReadableStream<Uint8Array>, x: AtlsRawRequest): Promise<AtlsRawReply> {
    const reader = body.getReader();
    let first: ReadResult;
    do first = await readOrTruncated(reader);
    while (!first.done && first.value.length === 0);
    if (first.done) return onProtected(found, new Uint8Array(0), x);
    const rest = prepend(first.value, reader);
    if (found instanceof LiveSession || !startsChunkStream(first.value[0]!)) return onProtected(found, await readBody(rest, maxWhole), x);
    return protectedReply(await answerChunks(found, rest, x));
  }

  /**
   * Records mode, an established session: the request's records fed to the
   * engine as they arrive, the answer's records sent as they are made.
   */
  async function onRecordsStream(live: LiveSession, body: ReadableStream<Uint8Array>, x: AtlsRawRequest): Promise<AtlsRawReply> {
    const peer = live.peer!;
    const engine = new EngineQueue();
    const early: Uint8Array[] = [];
    let failure: AtlsError | undefined;
    const input = new RecordsIn(core, live, body, engine, (f) => early.push(f));
    /**
     * The whole body reached the engine (records are sequenced); a failure after
     * some of its records did ends the session, one before any did leaves it as it was.
     */
    const finish = async (): Promise<void> => {
      try {
        await input.finish();
      } catch (e) {
        if (input.fed) await core.end(live, 'failed');
        throw e;
      }
    };
    let response: Uint8Array | ReadableStream<Uint8Array>;
    try {
      response = await dispatchStreamed(failOnError(input.plaintext, (e) => (failure ??= e)), peer, x);
    } catch (e) {
      await finish();
      throw failure ?? e;
    }
    if (failure !== undefined) {
      if (!(response instanceof Uint8Array)) await response.cancel().catch(() => undefined);
      await finish(); // a body refused as too large is read to its end: the session goes on
      throw failure;
    }
    const bhttp = watched(response instanceof Uint8Array ? streamOfBytes(response) : response, () => undefined, () => failure);
    const type = mediaType(x.header('content-type')) === MEDIA_TYPE_FLIGHT_LATER ? MEDIA_TYPE_FLIGHT_LATER : MEDIA_TYPE_FLIGHT;
    const answer = await recordsAnswer(live, bhttp, engine, concatBytes(early), finish);
    return { status: 200, headers: [['cache-control', NO_STORE['cache-control']], ['content-type', type]], body: answer };
  }

  /**
   * Records mode: the answer's Binary HTTP encrypted piece by piece into
   * records as it is produced, after `before` (records already due). An
   * answer in the known-length form (small, at hand) comes back whole, as bytes.
   */
  function recordsAnswer(
    live: LiveSession,
    bhttp: ReadableStream<Uint8Array>,
    engine: EngineQueue,
    before: Uint8Array,
    finish?: () => Promise<void>,
  ): Promise<Uint8Array | ReadableStream<Uint8Array>> {
    const reader = bhttp.getReader();
    let lead: Uint8Array | undefined = before;
    let known = false;
    const records = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          for (;;) {
            const r = await reader.read();
            if (lead !== undefined && !r.done) known = r.value[0] === 1; // RFC 9292 §3.3: known-length response
            const out = r.done ? new Uint8Array(0) : await engine.run(() => core.sendRecords(live, r.value));
            const piece = lead !== undefined && lead.length > 0 ? concatBytes([lead, out]) : out;
            lead = undefined;
            if (r.done) {
              await finish?.(); // the request's last records reach the engine before the session is free
              if (piece.length > 0) controller.enqueue(piece);
              controller.close();
              return;
            }
            if (piece.length > 0) {
              controller.enqueue(piece);
              return;
            }
          }
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
    return settle(records, () => known);
  }

  /** A streamed reply keeps its session busy until it has been sent (records are sequenced). */
  const releaseAfter = (reply: AtlsRawReply): Promise<void> | undefined => {
    if (reply.body instanceof Uint8Array) return undefined;
    let done!: () => void;
    const sent = new Promise<void>((r) => (done = r));
    reply.body = watched(reply.body, done);
    return sent;
  };

  const gone = (): AtlsError =>
    new AtlsError('CLOSED', 'unknown or expired ATLS session: handshake again', { source: 'remote' });

  /** The session cookie's attributes for a request (built only when a cookie is set). */
  const cookieAttrsOf = (x: AtlsRawRequest): CookieAttributes => ({
    path: x.pathname,
    secure: options.secureCookie === undefined || options.secureCookie === 'auto' ? x.https : options.secureCookie,
  });

  /** The byte-level core: every front (Web, node:http) ends here. Never throws. */
  const serve = (x: AtlsRawRequest): Promise<AtlsRawReply> => (listening ? timedServe(x) : serveOnce(x)); // no promise around a promise

  const timedServe = async (x: AtlsRawRequest): Promise<AtlsRawReply> => {
    const start = performance.now();
    const reply = await serveOnce(x);
    emit({ type: 'reply', status: reply.status, ms: performance.now() - start });
    return reply;
  };

  const serveOnce = async (x: AtlsRawRequest): Promise<AtlsRawReply> => {
    if (!endpoints.includes(x.pathname)) return errorReply(new HttpRefusal(404, 'not an ATLS endpoint'));
    let id: string | undefined;
    let created: LiveSession | undefined;
    let known: FoundSession | undefined;
    try {
      if (x.method === 'DELETE') {
        // The explicit end of a session: its body proves the session (src/coap/delete.ts), a protected
        // message (exported) or the peer's close_notify records (records); the cookie alone proves nothing.
        const kind = bodyKind(x.header('content-type'));
        if (kind !== 'protected' && kind !== 'flight') {
          throw new HttpRefusal(415, `a DELETE carries ${MEDIA_TYPE_PROTECTED} or ${MEDIA_TYPE_FLIGHT}`, [['accept', `${MEDIA_TYPE_PROTECTED}, ${MEDIA_TYPE_FLIGHT}`]]);
        }
        const proof = streams(x) ? await readBody(x.stream!(), maxWhole) : await x.body(maxWhole);
        id = readCookie(x.header('cookie'), COOKIE_NAME);
        const got = id === undefined ? undefined : core.find(id);
        known = got instanceof Promise ? await got : got;
        if (!known) throw gone();
        const proven =
          known instanceof LiveSession ? kind === 'flight' && (await core.endIfClosed(known, proof)) : kind === 'protected' && (await core.endIfProven(known, proof));
        if (!proven) throw new HttpRefusal(403, 'DELETE did not prove the session');
        return { status: 204, headers: [['cache-control', 'no-store'], ['set-cookie', setCookie(COOKIE_NAME, '', { ...cookieAttrsOf(x), maxAge: 0 })]], body: EMPTY };
      }
      if (x.method !== 'POST') {
        throw new HttpRefusal(405, 'ATLS endpoints accept POST (and DELETE with a protected message)', [['allow', 'POST, DELETE']]);
      }
      const kind = bodyKind(x.header('content-type'));
      if (!kind) throw new HttpRefusal(415, `expected ${ACCEPT_POST}`, [['accept-post', ACCEPT_POST]]);
      const streamed = streams(x);
      let body: Uint8Array = EMPTY;
      if (!streamed) {
        const read = x.body(maxWhole);
        body = isThenable(read) ? await read : read;
      }
      id = readCookie(x.header('cookie'), COOKIE_NAME);
      if (id !== undefined) {
        const got = core.find(id);
        known = got instanceof Promise ? await got : got;
      }
      if (kind === 'protected') {
        if (!known) throw gone();
        if (streamed) return await onProtectedStream(known, x.stream!(), x);
        const reply = onProtected(known, body, x);
        return reply instanceof Promise ? await reply : reply;
      }
      if (streamed) {
        if (known instanceof LiveSession && known.handshake && mode === 'records') {
          // Records of an established records-mode session: fed to the engine as they arrive (busy until answered).
          const live = known;
          return await core.exclusive(live, () => onRecordsStream(live, x.stream!(), x), releaseAfter);
        }
        body = await readBody(x.stream!(), maxWhole);
      }
      const hello = startsWithClientHello(body);
      if (known instanceof LiveSession && (!hello || known.awaitingHello)) {
        const live = known;
        return await core.exclusive(live, () => onFlight(live, body, x), releaseAfter);
      }
      if (known) {
        // An established architecture-(b) session takes no more flights.
        if (!hello) throw new AtlsError('INVALID_STATE', `session established: send ${MEDIA_TYPE_PROTECTED}`, { source: 'remote' });
        // A ClientHello with a session's cookie starts a new session beside
        // it: a cookie proves nothing of the keys, so it neither ends nor
        // replaces the session it names (that one goes on, or ages out).
      } else if (id !== undefined && !startsWithClientHello(body)) {
        throw gone();
      }
      // Only a ClientHello starts a session: anything else is refused before it takes a slot (at a cap,
      // admitting it would make another peer's handshake or session give way) or an engine.
      if (!hello) throw new AtlsError('MALFORMED_RECORD', 'a new session starts with a TLS ClientHello', { source: 'remote' });
      const address = clientAddress(x);
      if (!hellos.fresh(body)) {
        // RFC 8446 §8.2: a recorded ClientHello is a replay; refusing it costs a lookup, not a handshake step.
        throw new AtlsError('REPLAYED', 'this ClientHello already started a handshake', { source: 'remote' });
      }
      let live: LiveSession;
      try {
        live = core.admit(peerGroup(address));
      } catch (e) {
        hellos.forget(body); // refused before any processing: the client may resend this ClientHello
        throw e;
      }
      created = live;
      emit({ type: 'session', sessionId: live.id, address });
      const res = await core.exclusive(live, () => onFlight(live, body, x), releaseAfter);
      res.headers.push(['set-cookie', setCookie(COOKIE_NAME, live.id, cookieAttrsOf(x))]);
      return res;
    } catch (err) {
      return failed(err, x, id, known, created);
    }
  };

  /** The reply to a request that failed: the error's status, and a cookie that names nothing (any more) dropped. */
  const failed = (err: unknown, x: AtlsRawRequest, id: string | undefined, known: FoundSession | undefined, created: LiveSession | undefined): AtlsRawReply => {
    const extra: Array<[string, string]> = [];
    const lost = known ? core.isGone(known) : id !== undefined && !created;
    if (lost && id !== undefined) extra.push(['set-cookie', setCookie(COOKIE_NAME, '', { ...cookieAttrsOf(x), maxAge: 0 })]);
    const res = errorReply(err, extra);
    if (err instanceof AtlsError && listening) {
      emit({ type: 'error', sessionId: created?.id ?? known?.id ?? id, error: err, status: res.status, address: clientAddress(x) });
    }
    return res;
  };

  // serveOnce's protected-message path, taken without a promise when the store answers at once (no 'reply'
  // events asked for: they time each request through serve()).
  const serveHeld = (x: AtlsRawRequest, body: Uint8Array): AtlsRawReply | Promise<AtlsRawReply> => {
    if (listening || !core.findsAtOnce || x.method !== 'POST' || body.length > maxWhole || !endpoints.includes(x.pathname)) return serve(x);
    if (bodyKind(x.header('content-type')) !== 'protected') return serve(x);
    let id: string | undefined;
    let known: FoundSession | undefined;
    try {
      id = readCookie(x.header('cookie'), COOKIE_NAME);
      known = id === undefined ? undefined : (core.find(id) as FoundSession | undefined);
      if (!known) throw gone();
      const reply = onProtected(known, body, x);
      return reply instanceof Promise ? reply.catch((err: unknown) => failed(err, x, id, known, undefined)) : reply;
    } catch (err) {
      return failed(err, x, id, known, undefined);
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
      stream: () => request.body ?? new ReadableStream({ start: (c) => c.close() }),
      https: url.protocol === 'https:',
      authority: url.host,
      outer: () => request,
    });
    return replyToResponse(reply);
  };

  return Object.assign(handler, {
    serve,
    serveHeld,
    matches: (pathname: string) => endpoints.includes(pathname),
    stats: (): AtlsHandlerStats => ({ sessions: core.size, halfOpen: core.halfOpen, intercepted: Object.fromEntries(intercepted) }),
    close: () => core.close(),
  });
}
