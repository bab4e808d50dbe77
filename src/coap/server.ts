/**
 * The ATLS server over CoAP (docs/protocol.md §6): flights POSTed to
 * `/.well-known/atls`, the first answered 2.01 Created with
 * `Location-Path: atls/<id>` (the -05 per-session resource model); later
 * flights and protected messages POSTed to that path. Architecture (b) by
 * default: each protected message carries one inner CoAP request
 * (Content-Format `protected`, 65001) or one Binary HTTP request
 * (`protectedHttp`, 65002), dispatched to `handler` / `httpApp`.
 *
 * @example
 * ```ts
 * const server = await AtlsCoapServer.listen({
 *   host: '127.0.0.1', port: 5684,
 *   tls: { cert, key },
 *   handler: (req) => ({ code: '2.05', payload: req.payload }),
 * });
 * console.log(server.url); // coap://127.0.0.1:5684
 * await server.close();
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { HandshakeInfo, TlsEngine, TlsServerConfig } from '../engines/types.js';
import { checkServerCredentials } from '../engines/credentials.js';
import { AtlsServerSession } from '../session/session.js';
import type { Mode } from '../session/types.js';
import type { ProtectedChannelOptions } from '../protect/index.js';
import { newSessionId, parseSessionId } from '../store/ids.js';
import { bhttpToRequest, responseToBhttp } from '../bhttp/index.js';
import { concatBytes } from '../bytes.js';
import {
  CoapCode,
  DEFAULT_CONTENT_FORMATS,
  OptionNumber,
  SESSION_PATH_PREFIX,
  WELL_KNOWN_PATH,
  type TransmissionParameters,
} from './constants.js';
import { getPath, getUintOption, stringOption, uintOption, type CoapMessage } from './packet.js';
import { BlockwiseServer, codeFromHint, peerKey, type CoapResponse, type Peer } from './blockwise.js';
import { HalfOpenLedger } from '../store/half-open.js';
import { peerGroup } from '../peers.js';
import { CoapEndpoint } from './endpoint.js';
import { decodeInner, encodeInner, fromCoapReply, toCoapRequest, type CoapReply, type CoapRequest } from './inner.js';

/** Content-Formats of an ATLS CoAP server or client (all from 65000-65535, configurable). */
export interface AtlsCoapFormats {
  /** A TLS flight (records), also application data records in mode `records`. Default 65000. */
  records: number;
  /** A protected message carrying one inner CoAP message. Default 65001. */
  protected: number;
  /** A protected message carrying one Binary HTTP message (RFC 9292). Default 65002. */
  protectedHttp: number;
}

/** Default Content-Formats (docs/protocol.md §6.2). */
export const DEFAULT_ATLS_COAP_FORMATS: Readonly<AtlsCoapFormats> = Object.freeze({
  records: DEFAULT_CONTENT_FORMATS.records,
  protected: DEFAULT_CONTENT_FORMATS.protected,
  protectedHttp: 65002,
});

/** Who sent an inner request. */
export interface AtlsCoapPeer {
  sessionId: string;
  address: string;
  port: number;
  handshake: HandshakeInfo | undefined;
}

/** Answers one inner CoAP request. */
export type CoapRequestHandler = (req: CoapRequest, peer: AtlsCoapPeer) => Promise<CoapReply> | CoapReply;

/** Answers one inner HTTP request (Binary HTTP inside protected messages). */
export type HttpApp = (request: Request, peer: AtlsCoapPeer) => Promise<Response> | Response;

/** What the server reports (logging, tests). */
export type AtlsCoapServerEvent =
  | { type: 'session'; sessionId: string; peer: Peer }
  | { type: 'established'; sessionId: string; info: HandshakeInfo }
  | { type: 'request'; sessionId: string; method: string; path: string; code: string }
  | { type: 'error'; sessionId: string | undefined; error: AtlsError; code: string; peer?: Peer }
  | { type: 'limit'; limit: string; peer: string }
  | { type: 'evicted'; what: 'half-open'; peer: string; reason: string }
  | { type: 'closed'; sessionId: string; reason: 'deleted' | 'expired' | 'failed' | 'evicted' | 'peer' };

/** Options of {@link AtlsCoapServer.listen} and {@link createAtlsCoapHandler}. */
export interface AtlsCoapServerOptions {
  /** TLS configuration of every session (certificates, PSK lookup, DTLS...). */
  tls: TlsServerConfig;
  engine?: TlsEngine;
  /** Default `exported` (architecture b); `records` carries inner messages in TLS records. */
  mode?: Mode;
  /** Inner CoAP request handler. Default: 4.04 for everything. */
  handler?: CoapRequestHandler;
  /** Inner HTTP handler for Binary HTTP protected messages. Default: those get 4.15. */
  httpApp?: HttpApp;
  contentFormats?: Partial<AtlsCoapFormats>;
  /** Bind address (default 127.0.0.1) and port (default 0: any; 5683 is CoAP's). */
  host?: string;
  port?: number;
  /** Largest flight or message body (default 64 KiB). */
  maxBodyBytes?: number;
  /** Largest block the server sends (default 1024). */
  maxBlockSize?: number;
  /** Sessions, half-open or established (default 10000). */
  maxSessions?: number;
  /** Half-open handshakes (default 1000). */
  maxHalfOpen?: number;
  /** Idle lifetime of an established session (default 1 h). */
  sessionTtlMs?: number;
  /** Lifetime of a half-open handshake (default 30 s). */
  handshakeTtlMs?: number;
  /** Concurrent block-wise transfers per peer and overall (defaults 16 and 256). */
  maxTransfersPerPeer?: number;
  maxTransfers?: number;
  protection?: ProtectedChannelOptions;
  transmission?: Partial<TransmissionParameters>;
  /** Event sink. */
  onEvent?: (e: AtlsCoapServerEvent) => void;
}

interface Entry {
  id: string;
  session: AtlsServerSession;
  expires: number;
  established: boolean;
  /** The endpoint (address|port) that started the handshake. */
  endpoint: string;
  /** Serializes requests of one session: a session processes one flight at a time. */
  queue: Promise<unknown>;
}

const enc = new TextEncoder();

function diag(code: number, text: string, options: CoapResponse['options'] = []): CoapResponse {
  return { code, options, payload: enc.encode(text) }; // diagnostic payload (RFC 7252 §5.5.2)
}

function samePath(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/**
 * The ATLS request logic without a socket: takes a whole (reassembled) CoAP
 * request and resolves with the response. {@link AtlsCoapServer} puts it
 * behind a UDP endpoint and the block-wise layer.
 */
export class AtlsCoapHandler {
  readonly formats: AtlsCoapFormats;
  private readonly sessions = new Map<string, Entry>();
  /** Half-open handshakes by peer, oldest first: at the cap the heaviest peer's oldest gives way. */
  private readonly halfOpen: HalfOpenLedger<Entry>;
  private readonly opts: AtlsCoapServerOptions;

  constructor(options: AtlsCoapServerOptions) {
    checkServerCredentials(options.tls);
    this.opts = options;
    this.formats = { ...DEFAULT_ATLS_COAP_FORMATS, ...options.contentFormats };
    this.halfOpen = new HalfOpenLedger(options.maxHalfOpen ?? 1000, options.handshakeTtlMs ?? 30_000);
  }

  /** Sessions held now (half-open and established). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Forgets every session. */
  closeAll(): void {
    for (const e of this.sessions.values()) e.session.destroy();
    this.sessions.clear();
    this.halfOpen.clear();
  }

  /** Handles one whole CoAP request. Never throws. */
  async handle(msg: CoapMessage, peer: Peer): Promise<CoapResponse> {
    this.sweep();
    let path: string[];
    let cf: number | undefined;
    try {
      path = getPath(msg);
      cf = getUintOption(msg, OptionNumber.ContentFormat);
    } catch {
      return diag(CoapCode.BadOption, 'malformed Uri-Path or Content-Format');
    }
    if (samePath(path, WELL_KNOWN_PATH)) {
      if (msg.code !== CoapCode.POST) return diag(CoapCode.MethodNotAllowed, 'POST flights here');
      if (cf !== this.formats.records) return this.unsupported(cf);
      return this.newSession(msg.payload, peer);
    }
    if (path.length === 2 && path[0] === SESSION_PATH_PREFIX) {
      const id = path[1]!;
      let entry = parseSessionId(id) ? this.sessions.get(id) : undefined;
      if (entry && entry.expires <= Date.now()) {
        this.drop(entry, 'expired');
        entry = undefined;
      }
      if (!entry) return diag(CoapCode.NotFound, 'no such ATLS session'); // -05: unknown session resource
      if (msg.code === CoapCode.DELETE) return this.onDelete(entry, cf, msg.payload, peer);
      if (msg.code !== CoapCode.POST) return diag(CoapCode.MethodNotAllowed, 'POST flights or protected messages here');
      const run = entry.queue.then(() => this.onSession(entry, cf, msg.payload, peer));
      entry.queue = run.catch(() => undefined);
      return run;
    }
    return diag(CoapCode.NotFound, 'not an ATLS resource');
  }

  /**
   * DELETE ends a session only when it proves the session: in mode exported
   * a protected message of the session (an empty one) rides in it; a
   * records-mode or half-open session takes it only from the endpoint that
   * started the handshake. Anyone else who learnt the id gets 4.03.
   */
  private onDelete(entry: Entry, cf: number | undefined, body: Uint8Array, peer: Peer): CoapResponse {
    if (entry.established && entry.session.mode === 'exported') {
      if (cf !== this.formats.protected) return diag(CoapCode.Forbidden, 'DELETE carries a protected message of this session');
      try {
        entry.session.unprotect(body);
      } catch (e) {
        return this.errorResponse(e instanceof AtlsError && e.code !== 'KEY_LIMIT_REACHED' ? new AtlsError('DECRYPT_FAILED', 'DELETE did not prove the session', { source: 'remote' }) : e, entry.id, peer);
      }
    } else if (peerKey(peer) !== entry.endpoint) {
      return diag(CoapCode.Forbidden, 'DELETE from another endpoint than the session\'s');
    }
    this.drop(entry, 'deleted');
    return { code: CoapCode.Deleted };
  }

  private unsupported(cf: number | undefined): CoapResponse {
    // RFC 7252 §5.10.3 / §5.9.2.10: 4.15 for a Content-Format the resource does not take.
    return diag(CoapCode.UnsupportedContentFormat, `Content-Format ${cf ?? 'missing'}; expected ${this.formats.records}, ${this.formats.protected} or ${this.formats.protectedHttp}`);
  }

  private errorResponse(e: unknown, sessionId: string | undefined, peer?: Peer): CoapResponse {
    const err = e instanceof AtlsError ? e : new AtlsError('INTERNAL', String(e), { cause: e });
    const code = codeFromHint(err.coapCode);
    this.opts.onEvent?.({ type: 'error', sessionId, error: err, code: err.coapCode, ...(peer ? { peer } : {}) });
    // The alert records, if any, ride in the error body so the client learns why (draft §9.3).
    if (err.alertFlight.length > 0) {
      return { code, options: [uintOption(OptionNumber.ContentFormat, this.formats.records)], payload: err.alertFlight };
    }
    return diag(code, err.code);
  }

  private async newSession(flight: Uint8Array, peer: Peer): Promise<CoapResponse> {
    const maxSessions = this.opts.maxSessions ?? 10_000;
    const group = peerGroup(peer.address);
    if (this.sessions.size >= maxSessions) {
      this.opts.onEvent?.({ type: 'limit', limit: 'sessions', peer: group });
      return this.errorResponse(new AtlsError('LIMIT_REACHED', 'too many ATLS sessions'), undefined, peer);
    }
    if (flight.length > (this.opts.maxBodyBytes ?? 64 * 1024)) return this.errorResponse(new AtlsError('TOO_LARGE', 'flight too large', { source: 'remote' }), undefined, peer);
    let session: AtlsServerSession;
    try {
      session = new AtlsServerSession({
        tls: this.opts.tls,
        ...(this.opts.engine ? { engine: this.opts.engine } : {}),
        mode: this.opts.mode ?? 'exported',
        maxFlightBytes: this.opts.maxBodyBytes ?? 64 * 1024,
        ...(this.opts.protection ? { protection: this.opts.protection } : {}),
      });
    } catch (e) {
      return this.errorResponse(e, undefined);
    }
    const id = newSessionId();
    const entry: Entry = { id, session, expires: Date.now() + (this.opts.handshakeTtlMs ?? 30_000), established: false, endpoint: peerKey(peer), queue: Promise.resolve() };
    let out;
    try {
      out = await session.receive(flight);
    } catch (e) {
      session.destroy();
      return this.errorResponse(e, undefined, peer);
    }
    const displaced = this.halfOpen.admit(id, entry, group);
    if (displaced.length > 0) this.opts.onEvent?.({ type: 'limit', limit: 'half-open', peer: group });
    for (const d of displaced) {
      this.drop(d.value, 'evicted');
      this.opts.onEvent?.({ type: 'evicted', what: 'half-open', peer: d.peer, reason: d.reason === 'expired' ? 'expired' : 'half-open' });
    }
    this.sessions.set(id, entry);
    this.opts.onEvent?.({ type: 'session', sessionId: id, peer });
    this.noteState(entry);
    return {
      code: CoapCode.Created,
      options: [
        // -05: the session resource, as Location-Path segments (RFC 7252 §5.10.7).
        stringOption(OptionNumber.LocationPath, SESSION_PATH_PREFIX),
        stringOption(OptionNumber.LocationPath, id),
        uintOption(OptionNumber.ContentFormat, this.formats.records),
      ],
      payload: out.flight,
    };
  }

  private noteState(entry: Entry): void {
    const s = entry.session;
    if (!entry.established && s.state === 'established') {
      entry.established = true;
      this.halfOpen.delete(entry.id);
      if (s.handshakeInfo) this.opts.onEvent?.({ type: 'established', sessionId: entry.id, info: s.handshakeInfo });
    }
    entry.expires = Date.now() + (entry.established ? (this.opts.sessionTtlMs ?? 3_600_000) : (this.opts.handshakeTtlMs ?? 30_000));
  }

  private peerOf(entry: Entry, peer: Peer): AtlsCoapPeer {
    return { sessionId: entry.id, address: peer.address, port: peer.port, handshake: entry.session.handshakeInfo };
  }

  private async onSession(entry: Entry, cf: number | undefined, body: Uint8Array, peer: Peer): Promise<CoapResponse> {
    if (!this.sessions.has(entry.id)) return diag(CoapCode.NotFound, 'no such ATLS session');
    const s = entry.session;
    if (cf === this.formats.records && entry.established && s.mode === 'exported') {
      // A late or replayed Finished, a stray ClientHello: nobody without the keys ends an established session.
      return this.errorResponse(new AtlsError('INVALID_STATE', 'session established: send protected messages', { source: 'remote' }), entry.id, peer);
    }
    if (cf === this.formats.records) {
      let out;
      try {
        out = await s.receive(body);
      } catch (e) {
        this.drop(entry, 'failed');
        return this.errorResponse(e, entry.id);
      }
      this.noteState(entry);
      const parts: Uint8Array[] = [out.flight];
      const data = out.events.filter((ev) => ev.type === 'data').map((ev) => (ev as { data: Uint8Array }).data);
      if (data.length > 0) {
        // Mode records: the application data is one inner CoAP request; answer in records.
        const reply = await this.dispatchCoap(concatBytes(data), entry, peer);
        try {
          parts.push(await s.send(reply));
        } catch (e) {
          this.drop(entry, 'failed');
          return this.errorResponse(e, entry.id);
        }
      }
      if (out.events.some((ev) => ev.type === 'closed')) this.drop(entry, 'peer');
      return { code: CoapCode.Changed, options: [uintOption(OptionNumber.ContentFormat, this.formats.records)], payload: concatBytes(parts) };
    }
    if (cf === this.formats.protected || cf === this.formats.protectedHttp) {
      if (s.mode !== 'exported') return diag(CoapCode.UnsupportedContentFormat, 'this session runs mode "records"');
      let plain: Uint8Array;
      try {
        plain = s.unprotect(body);
      } catch (e) {
        // A forged, replayed or too old message is dropped; the session goes on (decisions.md).
        if (e instanceof AtlsError && e.code === 'KEY_LIMIT_REACHED') this.drop(entry, 'failed');
        return this.errorResponse(e, entry.id);
      }
      this.noteState(entry);
      const reply = cf === this.formats.protected ? await this.dispatchCoap(plain, entry, peer) : await this.dispatchHttp(plain, entry, peer);
      let sealed: Uint8Array;
      try {
        sealed = s.protect(reply);
      } catch (e) {
        this.drop(entry, 'failed');
        return this.errorResponse(e, entry.id);
      }
      return { code: CoapCode.Changed, options: [uintOption(OptionNumber.ContentFormat, cf)], payload: sealed };
    }
    return this.unsupported(cf);
  }

  /** Runs the inner CoAP handler; any failure becomes an inner error response, never an outer one. */
  private async dispatchCoap(plain: Uint8Array, entry: Entry, peer: Peer): Promise<Uint8Array> {
    let req: CoapRequest;
    try {
      req = toCoapRequest(decodeInner(plain));
    } catch (e) {
      return encodeInner({ code: CoapCode.BadRequest, options: [], payload: enc.encode(e instanceof AtlsError ? e.message : 'bad inner message') });
    }
    let reply: CoapReply;
    try {
      reply = this.opts.handler ? await this.opts.handler(req, this.peerOf(entry, peer)) : { code: CoapCode.NotFound };
      const inner = encodeInner(fromCoapReply(reply));
      this.opts.onEvent?.({ type: 'request', sessionId: entry.id, method: req.method, path: req.path, code: codeText(inner[0]!) });
      return inner;
    } catch (e) {
      this.opts.onEvent?.({ type: 'error', sessionId: entry.id, error: e instanceof AtlsError ? e : new AtlsError('INTERNAL', String(e)), code: '5.00' });
      return encodeInner({ code: CoapCode.InternalServerError, options: [], payload: new Uint8Array(0) });
    }
  }

  private async dispatchHttp(plain: Uint8Array, entry: Entry, peer: Peer): Promise<Uint8Array> {
    if (!this.opts.httpApp) return responseToBhttp(new Response('no HTTP application behind this CoAP server\n', { status: 415 }));
    let request: Request;
    try {
      request = bhttpToRequest(plain);
    } catch {
      return responseToBhttp(new Response('bad Binary HTTP request\n', { status: 400 }));
    }
    try {
      const res = await this.opts.httpApp(request, this.peerOf(entry, peer));
      this.opts.onEvent?.({ type: 'request', sessionId: entry.id, method: request.method, path: new URL(request.url).pathname, code: String(res.status) });
      return await responseToBhttp(res);
    } catch {
      return responseToBhttp(new Response('internal server error\n', { status: 500 }));
    }
  }

  private drop(entry: Entry, reason: 'deleted' | 'expired' | 'failed' | 'evicted' | 'peer'): void {
    this.halfOpen.delete(entry.id);
    if (!this.sessions.delete(entry.id)) return;
    entry.session.destroy();
    this.opts.onEvent?.({ type: 'closed', sessionId: entry.id, reason });
  }

  private lastSweep = 0;

  private sweep(): void {
    const now = Date.now();
    if (now - this.lastSweep < 1000) return; // at most once a second: O(sessions)
    this.lastSweep = now;
    for (const e of this.sessions.values()) if (e.expires <= now) this.drop(e, 'expired');
  }
}

function codeText(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, '0')}`;
}

/** An ATLS server on a UDP CoAP endpoint. */
export class AtlsCoapServer {
  private constructor(
    readonly endpoint: CoapEndpoint,
    readonly handler: AtlsCoapHandler,
    readonly blockwise: BlockwiseServer,
  ) {}

  /** Binds the endpoint and starts serving. */
  static async listen(options: AtlsCoapServerOptions): Promise<AtlsCoapServer> {
    const handler = new AtlsCoapHandler(options); // checks the credentials before a socket is bound
    const endpoint = await CoapEndpoint.bind({
      ...(options.host !== undefined ? { host: options.host } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
      ...(options.transmission ? { transmission: options.transmission } : {}),
    });
    const blockwise = new BlockwiseServer({
      maxBodyBytes: options.maxBodyBytes ?? 64 * 1024,
      ...(options.maxBlockSize !== undefined ? { maxBlockSize: options.maxBlockSize } : {}),
      ...(options.maxTransfersPerPeer !== undefined ? { maxTransfersPerPeer: options.maxTransfersPerPeer } : {}),
      ...(options.maxTransfers !== undefined ? { maxTransfers: options.maxTransfers } : {}),
    });
    endpoint.handle((msg, peer) => blockwise.handle(msg, peer, (m, p) => handler.handle(m, p)));
    return new AtlsCoapServer(endpoint, handler, blockwise);
  }

  /** `coap://host:port` of this server. */
  get url(): string {
    const a = this.endpoint.address;
    return `coap://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  }

  get port(): number {
    return this.endpoint.port;
  }

  /** Stops serving and forgets every session. */
  async close(): Promise<void> {
    this.handler.closeAll();
    await this.endpoint.close();
  }
}

/** An inner CoAP handler that answers 2.05 Content with the request's own payload and Content-Format (`atls serve --echo`). */
export const echoCoapHandler: CoapRequestHandler = (req) => ({
  code: CoapCode.Content,
  payload: req.payload,
  ...(req.contentFormat !== undefined ? { contentFormat: req.contentFormat } : {}),
});
